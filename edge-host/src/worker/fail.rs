//! Answers by the fail mode (a trapped VM, a worker gone), and the outcome types they share
//! with the worker loop.

use tokio::sync::oneshot;

use crate::options::FailMode;
use crate::types::{
    DataOutcome, Direction, HeaderList, HttpContextId, RequestHead, ResponseHead, ResponseOutcome,
};

/// Status of a fail-closed answer.
const FAIL_CLOSED_STATUS: u16 = 503;

/// The filter's decision on a request, after any pause was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Forward the request with these headers (pseudo-headers included).
    Continue {
        context: HttpContextId,
        headers: HeaderList,
    },
    /// Answer with this response.
    LocalResponse {
        context: HttpContextId,
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

impl Outcome {
    /// The HTTP context to pass to `on_response` / `finish`.
    pub fn context(&self) -> HttpContextId {
        match self {
            Outcome::Continue { context, .. } | Outcome::LocalResponse { context, .. } => *context,
        }
    }
}

/// A request or response waiting for the filter to resume it.
pub(super) enum Waiter {
    Request(RequestHead, oneshot::Sender<Outcome>),
    Response(ResponseHead, oneshot::Sender<ResponseOutcome>),
    Data {
        dir: Direction,
        trailers: bool,
        reply: oneshot::Sender<DataOutcome>,
    },
}

/// A context id that no VM has (VM ids start at 1): used for fail-mode answers.
const NO_CONTEXT: HttpContextId = HttpContextId { vm: 0, id: 0 };

pub(super) fn fail_request(mode: FailMode, head: &RequestHead) -> Outcome {
    match mode {
        FailMode::Open => Outcome::Continue {
            context: NO_CONTEXT,
            headers: head.header_map().into(),
        },
        FailMode::Closed => Outcome::LocalResponse {
            context: NO_CONTEXT,
            status: FAIL_CLOSED_STATUS,
            headers: vec![("content-type".into(), "application/json".into())],
            body: fail_closed_body(),
        },
    }
}

pub(super) fn fail_response(mode: FailMode, head: &ResponseHead) -> ResponseOutcome {
    match mode {
        FailMode::Open => ResponseOutcome::Continue {
            headers: head.headers.clone(),
        },
        FailMode::Closed => ResponseOutcome::LocalResponse {
            status: FAIL_CLOSED_STATUS,
            headers: vec![("content-type".into(), "application/json".into())],
            body: fail_closed_body(),
        },
    }
}

fn fail_closed_body() -> Vec<u8> {
    br#"{"error":"edge filter unavailable"}"#.to_vec()
}

/// A body or trailers phase by the fail mode: open forwards the rest unfiltered.
pub(super) fn fail_data(mode: FailMode) -> DataOutcome {
    match mode {
        FailMode::Open => DataOutcome::Unfiltered,
        FailMode::Closed => DataOutcome::LocalResponse {
            status: FAIL_CLOSED_STATUS,
            headers: vec![("content-type".into(), "application/json".into())],
            body: fail_closed_body(),
        },
    }
}

impl Waiter {
    /// Answers by the fail mode (the VM trapped).
    pub(super) fn fail(self, mode: FailMode) {
        match self {
            Waiter::Request(head, reply) => {
                let _ = reply.send(fail_request(mode, &head));
            }
            Waiter::Response(head, reply) => {
                let _ = reply.send(fail_response(mode, &head));
            }
            Waiter::Data { reply, .. } => {
                let _ = reply.send(fail_data(mode));
            }
        }
    }
}
