//! The HTTP side: one request at a time to the JSON API (an async `reqwest` client driven
//! by a single-threaded runtime), and the one error type with its exit codes.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::Credentials;

/// Exit codes (also in `contain --help`).
pub const EXIT_NOT_CONTAINED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_API: u8 = 3;
pub const EXIT_UNREACHABLE: u8 = 4;

/// Why a command failed. `Display` is the one line printed after `error: `.
#[derive(Debug)]
pub enum Failure {
    /// The API answered with an error body.
    Api(Box<ApiFailure>),
    /// No answer: connection refused, timeout, not HTTP.
    Unreachable { url: String, detail: String },
    /// Bad flags the parser could not catch (a duration, an empty key).
    Usage(String),
    /// Configuration or local files.
    Local(String),
}

/// An error answer: `{"error": {"code", "field", "message", "missing"?}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub field: Option<String>,
    pub message: String,
    pub missing: Vec<String>,
    /// Where the token came from, for a 401.
    pub token_from: Option<String>,
    /// More lines printed after the error line (a table of the live actions, a hint).
    pub detail: Option<String>,
}

impl ApiFailure {
    /// Read an error answer; a body that is not the API's error shape is reported as is.
    pub fn from_body(status: u16, body: &[u8]) -> ApiFailure {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let e = &v["error"];
        let text = |k: &str| e[k].as_str().map(str::to_string);
        let fallback = || {
            let raw = String::from_utf8_lossy(body);
            let raw = raw.trim();
            if raw.is_empty() {
                StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("error")
                    .to_string()
            } else {
                raw.chars().take(200).collect()
            }
        };
        ApiFailure {
            status,
            code: text("code").unwrap_or_else(|| "http".into()),
            field: text("field"),
            message: text("message").unwrap_or_else(fallback),
            missing: e["missing"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            token_from: None,
            detail: None,
        }
    }
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{} ({} {})", self.message, self.status, self.code)?;
        if self.status == 401 {
            let from = self.token_from.as_deref().unwrap_or("the configuration");
            write!(
                f,
                "; the token from {from} was refused: run `contain login` or fix EC_TOKEN"
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Api(a) => a.fmt(f),
            Failure::Unreachable { url, detail } => write!(f, "cannot reach {url}: {detail}"),
            Failure::Usage(m) | Failure::Local(m) => f.write_str(m),
        }
    }
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Api(_) => EXIT_API,
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Unreachable { .. } | Failure::Local(_) => EXIT_UNREACHABLE,
        }
    }
}

/// The innermost cause of a transport error, on one line.
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let msg = cause.to_string().replace('\n', " ");
    if e.is_timeout() {
        format!("timed out ({msg})")
    } else {
        msg
    }
}

/// Check the URL's form before anything is sent to it.
pub fn check_url(url: &str) -> Result<String, Failure> {
    let url = url.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Failure::Usage(format!("--url: {url:?} is not a URL: {e}")))?;
    match parsed.scheme() {
        "http" => {}
        "https" => {
            return Err(Failure::Usage(format!(
                "--url: {url}: this build of contain speaks plain HTTP only; reach the control \
                 plane over http:// (on its host, or through an SSH tunnel)"
            )))
        }
        s => {
            return Err(Failure::Usage(format!(
                "--url: unsupported scheme {s:?} (expected http)"
            )))
        }
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(Failure::Usage(format!(
            "--url: {url}: no query or fragment"
        )));
    }
    Ok(url.to_string())
}

/// A logged-in client.
pub struct Client {
    base: String,
    token: String,
    token_from: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// A successful answer.
pub struct Answer {
    pub status: u16,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Result<Value, Failure> {
        serde_json::from_slice(&self.bytes)
            .map_err(|e| Failure::Local(format!("the answer is not JSON: {e}")))
    }
}

impl Client {
    pub fn new(c: &Credentials) -> Result<Client, Failure> {
        let base = check_url(&c.url).map_err(|e| match e {
            Failure::Usage(m) => Failure::Local(format!("{m} (URL from {})", c.url_from)),
            other => other,
        })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("contain/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::Local(format!("HTTP client: {e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::Local(format!("runtime: {e}")))?;
        Ok(Client {
            base,
            token: c.token.clone(),
            token_from: c.token_from.clone(),
            http,
            rt,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Send one request; an error status becomes [`Failure::Api`].
    pub fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        accept: &str,
    ) -> Result<Answer, Failure> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .header("accept", accept);
        if let Some(b) = body {
            req = req.json(b);
        }
        let unreachable = |e: reqwest::Error| Failure::Unreachable {
            url: self.base.clone(),
            detail: root_cause(&e),
        };
        let (status, bytes) = self.rt.block_on(async {
            let resp = req.send().await.map_err(unreachable)?;
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.map_err(unreachable)?;
            Ok::<_, Failure>((status, bytes.to_vec()))
        })?;
        if status >= 400 {
            let mut f = ApiFailure::from_body(status, &bytes);
            f.token_from = Some(self.token_from.clone());
            return Err(Failure::Api(Box::new(f)));
        }
        Ok(Answer { status, bytes })
    }

    /// A JSON request; the answer as JSON.
    pub fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        self.send(method, path, body, "application/json")?.json()
    }

    pub fn get(&self, path: &str) -> Result<Value, Failure> {
        self.call(Method::GET, path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        self.call(Method::POST, path, Some(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        self.call(Method::PATCH, path, Some(body))
    }

    /// Every item of a paged list (`{items, total, limit, offset}`), 200 at a time.
    pub fn get_all(&self, path: &str, query: &[(&str, String)]) -> Result<Vec<Value>, Failure> {
        let mut items = Vec::new();
        loop {
            let mut q = query.to_vec();
            q.push(("limit", "200".into()));
            q.push(("offset", items.len().to_string()));
            let page = self.get(&with_query(path, &q))?;
            let got = page["items"].as_array().cloned().unwrap_or_default();
            let total = page["total"].as_u64().unwrap_or(0) as usize;
            let n = got.len();
            items.extend(got);
            if n == 0 || items.len() >= total {
                return Ok(items);
            }
        }
    }
}

/// `path?k=v&...`, values percent-encoded; `path` alone without pairs.
pub fn with_query(path: &str, pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return path.to_string();
    }
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    format!("{path}?{}", s.finish())
}

/// Deserialise an answer into a view type; a shape mismatch names the path.
pub fn typed<T: DeserializeOwned>(v: &Value) -> Result<T, Failure> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        Failure::Local(format!(
            "unexpected answer from the control plane at {}: {} (is contain older than the server?)",
            e.path(),
            e.inner()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_reads_as_one_line_naming_the_field() {
        let body = br#"{"error":{"code":"invalid_field","field":"target.cidr","message":"\"10.0.0.300/8\" is not an IP address or CIDR"}}"#;
        let f = ApiFailure::from_body(422, body);
        assert_eq!(
            f.to_string(),
            "target.cidr: \"10.0.0.300/8\" is not an IP address or CIDR (422 invalid_field)"
        );
        let body = br#"{"error":{"code":"missing_facts","field":"impact","message":"m","missing":["impact","dpo_contact"]}}"#;
        assert_eq!(
            ApiFailure::from_body(422, body).missing,
            ["impact", "dpo_contact"]
        );
    }

    #[test]
    fn a_refused_token_says_where_it_came_from() {
        let body =
            br#"{"error":{"code":"unauthenticated","message":"the bearer token is not valid"}}"#;
        let mut f = ApiFailure::from_body(401, body);
        f.token_from = Some("EC_TOKEN".into());
        let line = f.to_string();
        assert!(
            line.starts_with("the bearer token is not valid (401 unauthenticated)"),
            "{line}"
        );
        assert!(line.contains("EC_TOKEN") && !line.contains('\n'), "{line}");
    }

    #[test]
    fn a_body_that_is_not_the_error_shape_is_still_reported() {
        let f = ApiFailure::from_body(502, b"");
        assert_eq!(f.to_string(), "Bad Gateway (502 http)");
        let f = ApiFailure::from_body(500, b"upstream died");
        assert_eq!(f.message, "upstream died");
    }

    #[test]
    fn urls_are_checked_before_use() {
        assert_eq!(
            check_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            check_url("http://cp.internal/base").unwrap(),
            "http://cp.internal/base"
        );
        assert!(check_url("https://cp")
            .unwrap_err()
            .to_string()
            .contains("plain HTTP"));
        assert!(check_url("cp:8080").is_err());
        assert!(check_url("not a url").is_err());
        assert!(check_url("http://cp/?x=1").is_err());
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(with_query("/v1/x", &[]), "/v1/x");
        assert_eq!(
            with_query("/v1/lookup", &[("api_key", "a b&c=/".into())]),
            "/v1/lookup?api_key=a+b%26c%3D%2F"
        );
    }
}
