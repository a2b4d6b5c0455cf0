//! Which endpoint of a cluster an HTTP call goes to, and the health bookkeeping behind it:
//! the pure part of the host's load balancing (no I/O, no clock: callers pass `now`).
//!
//! Modelled on an Envoy cluster with round-robin load balancing and outlier detection:
//!
//! - calls are spread round-robin over the *available* endpoints (not ejected, not failing
//!   an active health check);
//! - an endpoint is ejected for a back-off period after a transport failure (the connection
//!   was refused, reset or timed out) or after [`Params::consecutive_5xx`] 5xx answers in a
//!   row (Envoy's `consecutive_5xx`, default 5). The back-off is
//!   `base_ejection * times ejected`, capped at `max_ejection` (Envoy's
//!   `base_ejection_time` / `max_ejection_time`); an answer below 500 resets the count;
//! - an ejected endpoint comes back by itself when its back-off ends (its next call is the
//!   trial);
//! - when no endpoint is available the balancer spreads over all of them anyway (Envoy's
//!   panic mode) rather than failing every call. Envoy enters it below 50 % healthy; here only
//!   at 0 %, so in a two- or three-endpoint cluster a dead endpoint is never picked while a
//!   live one remains.

use std::time::{Duration, Instant};

/// Tunables of the outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// 5xx answers in a row that eject an endpoint.
    pub consecutive_5xx: u32,
    /// First ejection's length; the n-th ejection in a row lasts n times this.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
}

impl Default for Params {
    /// Envoy's outlier-detection defaults.
    fn default() -> Self {
        Params {
            consecutive_5xx: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
        }
    }
}

/// How one attempt on an endpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// No connection could be made: nothing was sent.
    ConnectFailed,
    /// The request (or part of it) was sent, then the connection failed or the call timed
    /// out.
    Failed,
    /// An answer with this status.
    Answered(u16),
}

/// Why [`Balancer::record`] ejected an endpoint (for the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejected {
    pub index: usize,
    pub for_: Duration,
}

#[derive(Debug, Clone)]
struct Endpoint {
    consecutive_5xx: u32,
    /// Ejections since the last answer below 500.
    ejections: u32,
    ejected_until: Option<Instant>,
    /// Failing its active health check (when one is configured).
    check_failed: bool,
}

/// The health of a cluster's endpoints and the round-robin cursor. Endpoints are known by
/// index (their order in the configuration).
#[derive(Debug, Clone)]
pub struct Balancer {
    endpoints: Vec<Endpoint>,
    next: usize,
    params: Params,
}

impl Balancer {
    /// A balancer over `n` endpoints, all available.
    pub fn new(n: usize, params: Params) -> Balancer {
        Balancer {
            endpoints: vec![
                Endpoint {
                    consecutive_5xx: 0,
                    ejections: 0,
                    ejected_until: None,
                    check_failed: false,
                };
                n
            ],
            next: 0,
            params,
        }
    }

    /// Whether endpoint `i` may take calls at `now` (outside panic mode).
    pub fn available(&self, i: usize, now: Instant) -> bool {
        let e = &self.endpoints[i];
        !e.check_failed && e.ejected_until.is_none_or(|t| t <= now)
    }

    /// The endpoint for the next call, round-robin over the available ones; over all of them
    /// when none is available (panic mode). `avoid` (the endpoint a retry comes from) is
    /// never picked; `None` when nothing else is left.
    pub fn pick(&mut self, now: Instant, avoid: Option<usize>) -> Option<usize> {
        let n = self.endpoints.len();
        let candidates = |healthy_only: bool| {
            (0..n)
                .map(|k| (self.next + k) % n)
                .filter(|&i| Some(i) != avoid)
                .find(|&i| !healthy_only || self.available(i, now))
        };
        let i = candidates(true).or_else(|| candidates(false))?;
        self.next = (i + 1) % n;
        Some(i)
    }

    /// Records how an attempt on endpoint `i` ended; `Some` when that ejected it.
    pub fn record(&mut self, i: usize, attempt: Attempt, now: Instant) -> Option<Ejected> {
        let params = self.params;
        let e = &mut self.endpoints[i];
        let eject = match attempt {
            Attempt::ConnectFailed | Attempt::Failed => true,
            Attempt::Answered(status) if status >= 500 => {
                e.consecutive_5xx += 1;
                e.consecutive_5xx >= params.consecutive_5xx
            }
            Attempt::Answered(_) => {
                e.consecutive_5xx = 0;
                e.ejections = 0;
                e.ejected_until = None;
                false
            }
        };
        if !eject {
            return None;
        }
        e.consecutive_5xx = 0;
        e.ejections = e.ejections.saturating_add(1);
        let for_ = params
            .base_ejection
            .saturating_mul(e.ejections)
            .min(params.max_ejection);
        e.ejected_until = Some(now + for_);
        Some(Ejected { index: i, for_ })
    }

    /// Records an active health check's verdict on endpoint `i`; true when that changed it.
    /// A passing check also ends an ejection (the endpoint answered), as in Envoy.
    pub fn record_check(&mut self, i: usize, healthy: bool) -> bool {
        let e = &mut self.endpoints[i];
        let changed = e.check_failed == healthy;
        e.check_failed = !healthy;
        if healthy {
            e.ejected_until = None;
            e.consecutive_5xx = 0;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(b: &mut Balancer, now: Instant, n: usize) -> Vec<usize> {
        (0..n).map(|_| b.pick(now, None).expect("a pick")).collect()
    }

    #[test]
    fn round_robin_over_all_endpoints_when_healthy() {
        let now = Instant::now();
        let mut b = Balancer::new(3, Params::default());
        assert_eq!(picks(&mut b, now, 6), [0, 1, 2, 0, 1, 2]);
        let mut one = Balancer::new(1, Params::default());
        assert_eq!(picks(&mut one, now, 3), [0, 0, 0]);
    }

    #[test]
    fn a_transport_failure_ejects_for_the_back_off_then_the_endpoint_returns() {
        let now = Instant::now();
        let p = Params::default();
        let mut b = Balancer::new(2, p);
        assert_eq!(
            b.record(0, Attempt::ConnectFailed, now),
            Some(Ejected {
                index: 0,
                for_: p.base_ejection
            })
        );
        assert_eq!(picks(&mut b, now, 3), [1, 1, 1]);
        let later = now + p.base_ejection;
        assert!(b.available(0, later));
        assert_eq!(picks(&mut b, later, 2), [0, 1]);
        // A second failure in a row ejects for twice as long; a timeout or reset counts.
        let e = b.record(0, Attempt::Failed, later).expect("ejected");
        assert_eq!(e.for_, p.base_ejection * 2);
        assert!(!b.available(0, later + p.base_ejection));
        assert!(b.available(0, later + p.base_ejection * 2));
    }

    #[test]
    fn the_back_off_grows_to_its_cap_and_an_answer_resets_it() {
        let now = Instant::now();
        let p = Params::default();
        let mut b = Balancer::new(2, p);
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            last = b
                .record(1, Attempt::ConnectFailed, now)
                .expect("ejected")
                .for_;
        }
        assert_eq!(last, p.max_ejection);
        assert_eq!(b.record(1, Attempt::Answered(200), now), None);
        assert!(b.available(1, now));
        let e = b.record(1, Attempt::ConnectFailed, now).expect("ejected");
        assert_eq!(e.for_, p.base_ejection);
    }

    #[test]
    fn only_consecutive_5xx_eject() {
        let now = Instant::now();
        let p = Params::default();
        let mut b = Balancer::new(2, p);
        for _ in 1..p.consecutive_5xx {
            assert_eq!(b.record(0, Attempt::Answered(503), now), None);
        }
        // An answer below 500 breaks the run; 4xx is the caller's problem, not the endpoint's.
        assert_eq!(b.record(0, Attempt::Answered(404), now), None);
        for _ in 1..p.consecutive_5xx {
            assert_eq!(b.record(0, Attempt::Answered(500), now), None);
        }
        assert!(b.available(0, now));
        assert!(b.record(0, Attempt::Answered(502), now).is_some());
        assert!(!b.available(0, now));
    }

    #[test]
    fn with_every_endpoint_ejected_calls_still_go_out_round_robin() {
        let now = Instant::now();
        let mut b = Balancer::new(2, Params::default());
        b.record(0, Attempt::ConnectFailed, now);
        b.record(1, Attempt::ConnectFailed, now);
        assert_eq!(picks(&mut b, now, 4), [0, 1, 0, 1]);
    }

    #[test]
    fn a_retry_avoids_the_endpoint_it_comes_from() {
        let now = Instant::now();
        let mut b = Balancer::new(3, Params::default());
        assert_eq!(b.pick(now, None), Some(0));
        b.record(0, Attempt::ConnectFailed, now);
        assert_eq!(b.pick(now, Some(0)), Some(1));
        // Another endpoint even in panic mode; none when the cluster has only the one.
        b.record(1, Attempt::ConnectFailed, now);
        b.record(2, Attempt::ConnectFailed, now);
        assert_ne!(b.pick(now, Some(2)), Some(2));
        let mut one = Balancer::new(1, Params::default());
        assert_eq!(one.pick(now, Some(0)), None);
    }

    #[test]
    fn a_failing_health_check_takes_an_endpoint_out_until_it_passes() {
        let now = Instant::now();
        let mut b = Balancer::new(2, Params::default());
        assert!(b.record_check(1, false));
        assert!(!b.record_check(1, false));
        assert_eq!(picks(&mut b, now, 3), [0, 0, 0]);
        b.record(0, Attempt::ConnectFailed, now);
        assert!(!b.record_check(0, true), "its verdict did not change");
        assert!(b.available(0, now), "but a pass ends the ejection");
        assert!(b.record_check(1, true));
        assert_eq!(picks(&mut b, now, 2), [1, 0]);
    }
}
