//! Runs N allowed requests through the real filter (or the no-op filter) in `edge-host`, for
//! counting instructions per request with callgrind, which is repeatable where wall-clock
//! timings on a shared machine are not:
//!
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/request_cost filter 1000 20000    # and with 0 requests; subtract
//!
//! Arguments: `filter` or `noop`, the number of CIDR rules (with the 10k keys, 1k pixels
//! and 1k paths of the `filter` benchmark), the number of requests.

use edge_benches::vmkit::{filter_plugin, noop_plugin, run_request, seed_policy, typical_request};
use edge_benches::{policy, with_paths, ALLOWED_V4};
use edge_host::Vm;
use edge_policy::wire;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("filter", String::as_str);
    let rules: usize = args.get(2).map_or(Ok(1000), |s| s.parse())?;
    let n: usize = args.get(3).map_or(Ok(10_000), |s| s.parse())?;
    let plugin = match which {
        "noop" => noop_plugin()?,
        "filter" => {
            let p = filter_plugin()?;
            let snap = with_paths(policy(rules, 10_000, 1_000), 1_000);
            seed_policy(&p, &wire::encode_snapshot(&snap), snap.version)?;
            p
        }
        other => anyhow::bail!("unknown filter {other:?}: `filter` or `noop`"),
    };
    let mut vm = Vm::start(&plugin)?;
    let head = typical_request(ALLOWED_V4.into());
    // One request first, so that lazily built state is not counted per request.
    anyhow::ensure!(run_request(&mut vm, &head) == 0, "the request is forwarded");
    let mut forwarded = 0;
    for _ in 0..n {
        forwarded += usize::from(run_request(&mut vm, &head) == 0);
    }
    println!("{which}: {forwarded} of {n} requests forwarded");
    Ok(())
}
