//! The command line (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const AFTER_HELP: &str = "\
Configuration: `contain login` keeps the URL and token in
$XDG_CONFIG_HOME/edge-containment/cli.json (else ~/.config/...), mode 0600;
EC_URL and EC_TOKEN override it.

Exit codes: 0 done (lookup: contained); 1 lookup: not contained;
2 bad usage; 3 the API refused the request; 4 no answer from the API, or a
local problem (configuration, files).";

const SEVERITIES: [&str; 8] = ["P0", "P1", "P2", "P3", "critical", "high", "medium", "low"];
const PHASES: [&str; 5] = [
    "detection_analysis",
    "containment",
    "eradication_recovery",
    "post_incident",
    "closed",
];

/// Responder CLI for the edge containment control plane.
#[derive(Debug, Parser)]
#[command(name = "contain", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Print the API's JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Check a token against the control plane and keep URL and token (mode 0600).
    Login(LoginArgs),
    /// Forget the saved URL and token.
    Logout,
    /// Open, list, show, change and close incidents.
    #[command(subcommand)]
    Incident(IncidentCmd),
    /// Block a target at every edge.
    Block(ActArgs),
    /// Isolate a host, path prefix or pixel (503, read-only, or pixel kill switch).
    Isolate(IsolateArgs),
    /// Put a target on the allow list (guard rail against blocking it).
    Allow(ActArgs),
    /// Lift a containment action.
    Lift {
        /// The action's id.
        action: i64,
        #[arg(long)]
        reason: String,
    },
    /// What is contained now, deadlines overdue or due soon, edges behind.
    Now {
        /// How far ahead a pending deadline counts as due soon.
        #[arg(long, default_value = "4h", value_name = "DURATION")]
        within: String,
    },
    /// Edges that reported, with their policy version.
    Edges,
    /// Deadlines of the response policy, in due order.
    Deadlines {
        #[arg(long)]
        incident: Option<i64>,
        #[arg(long, value_parser = ["pending", "met", "overdue", "all"])]
        status: Option<String>,
    },
    /// Record that someone was notified (authority, customers, staff).
    Notify(NotifyArgs),
    /// The complete record of an incident (JSON, or Markdown with --markdown).
    Export {
        incident: i64,
        /// Write to this file (created 0600) instead of standard output.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[arg(long)]
        markdown: bool,
    },
    /// Is this address, key, account, pixel, host or path contained? (exit 0 yes, 1 no)
    Lookup(LookupArgs),
    /// Print a shell completion script.
    Completions { shell: Shell },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The control plane, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: String,
    /// Read the token from standard input (else it is asked for on the terminal).
    #[arg(long)]
    pub token_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum IncidentCmd {
    /// Open an incident.
    Open(OpenArgs),
    /// List incidents, newest first.
    List {
        #[arg(long, default_value = "open", value_parser = ["open", "closed", "all"])]
        status: String,
        #[arg(long, value_parser = PHASES)]
        phase: Option<String>,
        #[arg(long, value_parser = SEVERITIES)]
        severity: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// An incident with its actions, deadlines and timeline.
    Show {
        id: i64,
        /// Show only the last N timeline entries (0: none).
        #[arg(long, value_name = "N")]
        timeline: Option<usize>,
    },
    /// Change an incident: severity, phase, assignee, facts.
    Set(SetArgs),
    /// Close an incident; with live containment say what happens to it.
    Close(CloseArgs),
}

#[derive(Debug, Args)]
pub struct OpenArgs {
    #[arg(long)]
    pub title: String,
    #[arg(long, value_parser = SEVERITIES)]
    pub severity: String,
    #[arg(long)]
    pub summary: Option<String>,
    /// An affected system (repeat for several).
    #[arg(long = "system", value_name = "SYSTEM")]
    pub systems: Vec<String>,
    #[arg(long)]
    pub personal_data: bool,
    #[arg(long)]
    pub health_data: bool,
    #[arg(long)]
    pub assignee: Option<String>,
    /// RFC 3339 (default now).
    #[arg(long, value_name = "TIME")]
    pub detected_at: Option<String>,
    #[arg(long)]
    pub impact: Option<String>,
    /// RFC 3339: when the next update is due.
    #[arg(long, value_name = "TIME")]
    pub next_update_at: Option<String>,
    /// Title for the customer notice (needs a server that knows the field).
    #[arg(long)]
    pub customer_title: Option<String>,
    /// Summary for the customer notice (needs a server that knows the field).
    #[arg(long)]
    pub customer_summary: Option<String>,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    pub id: i64,
    #[arg(long, value_parser = SEVERITIES)]
    pub severity: Option<String>,
    #[arg(long, value_parser = PHASES)]
    pub phase: Option<String>,
    /// `""` unassigns.
    #[arg(long)]
    pub assignee: Option<String>,
    /// Why (required to move a phase back).
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub summary: Option<String>,
    #[arg(long, value_name = "BOOL")]
    pub personal_data: Option<bool>,
    #[arg(long, value_name = "BOOL")]
    pub health_data: Option<bool>,
    #[arg(long, value_name = "TIME")]
    pub aware_at: Option<String>,
    #[arg(long, value_name = "TIME")]
    pub next_update_at: Option<String>,
    #[arg(long)]
    pub impact: Option<String>,
    #[arg(long)]
    pub breach_nature: Option<String>,
    /// A category of personal data (repeat; replaces the list).
    #[arg(long = "data-category", value_name = "CATEGORY")]
    pub data_categories: Vec<String>,
    #[arg(long, value_name = "N")]
    pub data_subjects_approx: Option<u64>,
    #[arg(long, value_name = "N")]
    pub records_approx: Option<u64>,
    #[arg(long)]
    pub likely_consequences: Option<String>,
    #[arg(long)]
    pub measures_taken: Option<String>,
    #[arg(long)]
    pub customer_title: Option<String>,
    #[arg(long)]
    pub customer_summary: Option<String>,
}

#[derive(Debug, Args)]
pub struct CloseArgs {
    pub id: i64,
    /// Lift every live action in the same change.
    #[arg(long, value_name = "REASON")]
    pub lift_all: Option<String>,
    /// Keep live containment enforced on purpose (recorded on the timeline).
    #[arg(long, value_name = "REASON", conflicts_with = "lift_all")]
    pub keep_containment: Option<String>,
}

/// A block or allow target: exactly one.
#[derive(Debug, Args)]
#[group(id = "target", required = true, multiple = false)]
pub struct TargetArgs {
    /// An address or CIDR.
    #[arg(long, value_name = "CIDR")]
    pub ip: Option<String>,
    /// A raw API key (`-`: read it from standard input, out of shell history).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
    #[arg(long, value_name = "ID")]
    pub pixel: Option<String>,
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long, value_name = "PATH")]
    pub path_prefix: Option<String>,
}

#[derive(Debug, Args)]
pub struct Common {
    /// The incident this action belongs to.
    #[arg(long)]
    pub incident: i64,
    #[arg(long)]
    pub reason: String,
    /// Expire after this long (`90s`, `1h30m`, `2d`).
    #[arg(long, value_name = "DURATION", conflicts_with = "expires_at")]
    pub expires_in: Option<String>,
    /// Expire at this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub expires_at: Option<String>,
    /// Count matches only; enforce nothing.
    #[arg(long)]
    pub simulate: bool,
    /// Override a guard rail (wide prefix, overlap with the allow list); recorded.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ActArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
#[group(id = "scope", required = true, multiple = false)]
pub struct ScopeArgs {
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long, value_name = "PATH")]
    pub path_prefix: Option<String>,
    #[arg(long, value_name = "ID")]
    pub pixel: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Isolation {
    /// Answer 503.
    Block,
    /// Refuse writes.
    ReadOnly,
    /// No-op script, 204 beacon, nothing forwarded.
    PixelKill,
}

#[derive(Debug, Args)]
pub struct IsolateArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Default: pixel-kill for a pixel, block otherwise.
    #[arg(long)]
    pub isolation: Option<Isolation>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct NotifyArgs {
    pub incident: i64,
    #[arg(long, value_parser = ["authority", "customers", "staff"])]
    pub audience: String,
    /// Default notification.
    #[arg(long, value_parser = ["notification", "preliminary_report", "internal_alert", "hipaa_notice"])]
    pub kind: Option<String>,
    /// How: email, dpa-portal, phone, status-page, ...
    #[arg(long)]
    pub channel: String,
    /// The recipient's case number, message id, URL.
    #[arg(long)]
    pub reference: Option<String>,
    #[arg(long)]
    pub note: Option<String>,
    /// RFC 3339 (default now).
    #[arg(long, value_name = "TIME")]
    pub notified_at: Option<String>,
    /// Default: the token's name.
    #[arg(long)]
    pub notified_by: Option<String>,
}

/// What to look up: one of ip, api-key, account, pixel, host; `--path` alone or with `--host`.
#[derive(Debug, Args)]
pub struct LookupArgs {
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["api_key", "account", "pixel", "host"])]
    pub ip: Option<String>,
    /// A raw API key (`-`: read it from standard input).
    #[arg(long, value_name = "KEY", conflicts_with_all = ["account", "pixel", "host"])]
    pub api_key: Option<String>,
    #[arg(long, value_name = "ID", conflicts_with_all = ["pixel", "host"])]
    pub account: Option<String>,
    #[arg(long, value_name = "ID", conflicts_with = "host")]
    pub pixel: Option<String>,
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long, conflicts_with_all = ["ip", "api_key", "account", "pixel"])]
    pub path: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_block_needs_exactly_one_target() {
        let ok = Cli::try_parse_from([
            "contain",
            "block",
            "--ip",
            "1.2.3.4",
            "--incident",
            "1",
            "--reason",
            "r",
        ]);
        assert!(ok.is_ok());
        let none = Cli::try_parse_from(["contain", "block", "--incident", "1", "--reason", "r"]);
        assert!(none.is_err());
        let two = Cli::try_parse_from([
            "contain",
            "block",
            "--ip",
            "1.2.3.4",
            "--host",
            "h",
            "--incident",
            "1",
            "--reason",
            "r",
        ]);
        assert!(two.is_err());
        let both = Cli::try_parse_from([
            "contain",
            "block",
            "--ip",
            "1.2.3.4",
            "--incident",
            "1",
            "--reason",
            "r",
            "--expires-in",
            "1h",
            "--expires-at",
            "2030-01-01T00:00:00Z",
        ]);
        assert!(both.is_err());
    }

    #[test]
    fn close_takes_one_way_with_live_containment() {
        let two = Cli::try_parse_from([
            "contain",
            "incident",
            "close",
            "1",
            "--lift-all",
            "a",
            "--keep-containment",
            "b",
        ]);
        assert!(two.is_err());
        assert!(Cli::try_parse_from(["contain", "incident", "close", "1"]).is_ok());
    }

    #[test]
    fn lookup_path_goes_with_host_or_alone() {
        assert!(Cli::try_parse_from(["contain", "lookup", "--host", "h", "--path", "/p"]).is_ok());
        assert!(Cli::try_parse_from(["contain", "lookup", "--path", "/p"]).is_ok());
        assert!(
            Cli::try_parse_from(["contain", "lookup", "--ip", "1.2.3.4", "--path", "/p"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["contain", "lookup", "--ip", "1.2.3.4", "--host", "h"]).is_err()
        );
    }
}
