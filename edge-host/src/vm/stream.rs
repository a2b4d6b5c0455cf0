//! The HTTP stream of a [`Vm`]: request and response headers, bodies and trailers as Envoy
//! delivers them, local replies (run through the response phase, as Envoy runs a local reply
//! through its encoder filters), and the end of a context (`proxy_on_done` / `_log` /
//! `_delete`).
//!
//! Bodies: each chunk is appended to the context's buffer of that direction, then
//! `proxy_on_{request,response}_body(id, buffered_len, end_of_stream)` runs. `Continue`
//! hands the buffer (after the filter's `set_buffer_bytes` edits) back to be forwarded and
//! empties it; `Pause` (Envoy's `StopIterationAndBuffer`) keeps it and waits for the next
//! chunk, or, at the end of the stream, for the filter to resume.

use std::sync::Arc;

use super::{Vm, ACTION_CONTINUE};
use crate::state::{HttpCtx, LocalReply};
use crate::types::{
    DataOutcome, Direction, FilterOutcome, GuestTrap, HeaderList, HttpContextId, RequestHead,
    ResponseHead, ResponseOutcome,
};

/// Status returned to the client when the filter resets the stream.
const RESET_STATUS: u16 = 502;

fn lower_pairs(pairs: &[(String, String)]) -> impl Iterator<Item = (String, String)> + '_ {
    pairs
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
}

impl Vm {
    pub(super) fn ctx_id(&self, id: u32) -> HttpContextId {
        HttpContextId {
            vm: self.store.data().vm,
            id,
        }
    }

    /// The live context `ctx` of this VM, if any.
    fn live(&mut self, ctx: HttpContextId) -> Option<&mut HttpCtx> {
        let s = self.store.data_mut();
        if ctx.vm != s.vm {
            return None;
        }
        s.http.get_mut(&ctx.id).map(|c| &mut **c)
    }

    /// True when the guest exports a body or trailers callback for `dir` (the Rust SDK
    /// always does). Without one, bodies pass through untouched and unseen.
    pub fn wants_body(&self, dir: Direction) -> bool {
        match dir {
            Direction::Request => {
                self.exports.on_request_body.is_some() || self.exports.on_request_trailers.is_some()
            }
            Direction::Response => {
                self.exports.on_response_body.is_some()
                    || self.exports.on_response_trailers.is_some()
            }
        }
    }

    /// Creates an HTTP context and runs `proxy_on_request_headers`. A local reply is run
    /// through the response phase before it is returned (see [`FilterOutcome`]).
    pub fn on_request(&mut self, req: &RequestHead) -> Result<FilterOutcome, GuestTrap> {
        if let Some(t) = &self.poisoned {
            return Err(t.clone());
        }
        let id = self.next_context;
        self.next_context = self.next_context.checked_add(1).unwrap_or(super::ROOT + 1);
        let s = self.store.data_mut();
        let ctx = HttpCtx::start(s, req, id);
        let n = ctx.request_headers.len() as u32;
        s.http.insert(id, ctx);
        let ex = self.exports.clone();
        self.store.data_mut().effective_context = id;
        self.invoke(
            "proxy_on_context_create",
            &ex.on_context_create,
            (id, super::ROOT),
        )?;
        let action = match &ex.on_request_headers {
            Some(f) => {
                self.store.data_mut().effective_context = id;
                self.invoke(
                    "proxy_on_request_headers",
                    f,
                    (id, n, u32::from(req.body_empty)),
                )?
            }
            None => ACTION_CONTINUE,
        };
        self.request_outcome(id, action == ACTION_CONTINUE)
    }

    fn request_outcome(&mut self, id: u32, continued: bool) -> Result<FilterOutcome, GuestTrap> {
        let context = self.ctx_id(id);
        let Some(ctx) = self.store.data_mut().http.get_mut(&id) else {
            return Ok(FilterOutcome::Paused { context });
        };
        if ctx.reset {
            return Ok(FilterOutcome::LocalResponse {
                context,
                status: RESET_STATUS,
                headers: Vec::new(),
                body: Vec::new(),
            });
        }
        if let Some(r) = ctx.local_reply.take() {
            let r = self.local_reply_pass(id, r)?;
            return Ok(FilterOutcome::LocalResponse {
                context,
                status: r.status,
                headers: r.headers,
                body: r.body,
            });
        }
        if continued || ctx.request_resumed {
            return Ok(FilterOutcome::Continue {
                context,
                headers: HeaderList(Arc::clone(&ctx.request_headers)),
            });
        }
        Ok(FilterOutcome::Paused { context })
    }

    /// Runs a local reply sent in the request phase through the response phase, as Envoy
    /// runs it through its encoder filters: `proxy_on_response_headers` sees `:status`, the
    /// reply's headers and `content-length`, then `proxy_on_response_body` sees the body
    /// (`end_of_stream` true). Their edits are applied; a `Pause` there is not waited for.
    /// A second local reply sent meanwhile replaces the first as is (Envoy sends that one
    /// directly).
    fn local_reply_pass(&mut self, id: u32, mut r: LocalReply) -> Result<LocalReply, GuestTrap> {
        let ex = self.exports.clone();
        if ex.on_response_headers.is_none() && ex.on_response_body.is_none() {
            return Ok(r);
        }
        let Some(c) = self.store.data_mut().http.get_mut(&id) else {
            return Ok(r);
        };
        c.response_code = Some(r.status);
        c.response_headers.clear();
        c.response_headers
            .push((":status".to_string(), r.status.to_string()));
        c.response_headers.append(&mut r.headers);
        if !r.body.is_empty() {
            c.response_headers
                .push(("content-length".to_string(), r.body.len().to_string()));
        }
        let n = c.response_headers.len() as u32;
        let body_empty = r.body.is_empty();
        c.response_body = std::mem::take(&mut r.body);
        if let Some(f) = &ex.on_response_headers {
            self.store.data_mut().effective_context = id;
            self.invoke(
                "proxy_on_response_headers",
                f,
                (id, n, u32::from(body_empty)),
            )?;
        }
        if let (false, Some(f)) = (body_empty, &ex.on_response_body) {
            let len = self
                .store
                .data()
                .http
                .get(&id)
                .map_or(0, |c| c.response_body.len());
            self.store.data_mut().effective_context = id;
            self.invoke(
                "proxy_on_response_body",
                f,
                (id, u32::try_from(len).unwrap_or(u32::MAX), 1),
            )?;
        }
        let Some(c) = self.store.data_mut().http.get_mut(&id) else {
            return Ok(r);
        };
        if let Some(again) = c.local_reply.take() {
            return Ok(again);
        }
        let status = c
            .response_headers
            .iter()
            .find(|(k, _)| k == ":status")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(r.status);
        Ok(LocalReply {
            status,
            headers: c
                .response_headers
                .iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .cloned()
                .collect(),
            body: std::mem::take(&mut c.response_body),
        })
    }

    /// For a request that returned [`FilterOutcome::Paused`]: its outcome once the filter
    /// resumed it or sent a local response; `None` while still paused or if unknown (or if
    /// running the local reply's response phase trapped: see [`Vm::poisoned`]).
    pub fn poll_request(&mut self, ctx: HttpContextId) -> Option<FilterOutcome> {
        self.live(ctx)?;
        match self.request_outcome(ctx.id, false) {
            Ok(FilterOutcome::Paused { .. }) | Err(_) => None,
            Ok(other) => Some(other),
        }
    }

    /// Runs `proxy_on_response_headers`. Unless the filter paused, the context then ends
    /// (`proxy_on_done` / `proxy_on_log` / `proxy_on_delete`) if no body follows for the
    /// filter to see; otherwise it ends with the last body chunk or the trailers
    /// ([`Vm::on_body`], [`Vm::on_trailers`]). An unknown context (for example from a VM
    /// that has since been re-created) passes the response through.
    pub fn on_response(
        &mut self,
        ctx: HttpContextId,
        resp: &ResponseHead,
    ) -> Result<ResponseOutcome, GuestTrap> {
        if let Some(t) = &self.poisoned {
            return Err(t.clone());
        }
        let id = ctx.id;
        let body_follows = !resp.body_empty && self.wants_body(Direction::Response);
        let Some(c) = self.live(ctx) else {
            return Ok(ResponseOutcome::Continue {
                headers: resp.headers.clone(),
            });
        };
        c.response_code = Some(resp.status);
        c.response_body_follows = body_follows;
        c.response_resumed = false;
        c.response_headers.clear();
        c.response_headers
            .push((":status".to_string(), resp.status.to_string()));
        c.response_headers.extend(lower_pairs(&resp.headers));
        let n = c.response_headers.len() as u32;
        let ex = self.exports.clone();
        let action = match &ex.on_response_headers {
            Some(f) => {
                self.store.data_mut().effective_context = id;
                self.invoke(
                    "proxy_on_response_headers",
                    f,
                    (id, n, u32::from(resp.body_empty)),
                )?
            }
            None => ACTION_CONTINUE,
        };
        let outcome = self.response_outcome(id, action == ACTION_CONTINUE);
        self.end_response_headers(id, &outcome)?;
        Ok(outcome)
    }

    /// Ends the context after the response headers unless paused, or a body follows.
    fn end_response_headers(
        &mut self,
        id: u32,
        outcome: &ResponseOutcome,
    ) -> Result<(), GuestTrap> {
        let follows = self
            .store
            .data()
            .http
            .get(&id)
            .is_some_and(|c| c.response_body_follows);
        match outcome {
            ResponseOutcome::Paused => Ok(()),
            ResponseOutcome::Continue { .. } if follows => Ok(()),
            _ => self.finish_inner(id),
        }
    }

    fn response_outcome(&mut self, id: u32, continued: bool) -> ResponseOutcome {
        let Some(ctx) = self.store.data_mut().http.get_mut(&id) else {
            return ResponseOutcome::Paused;
        };
        if ctx.reset {
            return ResponseOutcome::LocalResponse {
                status: RESET_STATUS,
                headers: Vec::new(),
                body: Vec::new(),
            };
        }
        if let Some(r) = ctx.local_reply.take() {
            return ResponseOutcome::LocalResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            };
        }
        if continued || ctx.response_resumed {
            return ResponseOutcome::Continue {
                headers: ctx
                    .response_headers
                    .iter()
                    .filter(|(k, _)| !k.starts_with(':'))
                    .cloned()
                    .collect(),
            };
        }
        ResponseOutcome::Paused
    }

    /// For a response that returned [`ResponseOutcome::Paused`]: its outcome once resumed;
    /// `None` while still paused or if unknown.
    pub fn poll_response(
        &mut self,
        ctx: HttpContextId,
    ) -> Option<Result<ResponseOutcome, GuestTrap>> {
        self.live(ctx)?;
        match self.response_outcome(ctx.id, false) {
            ResponseOutcome::Paused => None,
            other => Some(self.end_response_headers(ctx.id, &other).map(|()| other)),
        }
    }

    /// A body chunk of `dir` (after headers that continued): appended to the buffer, then
    /// `proxy_on_{request,response}_body(id, buffered_len, end_of_stream)`. An empty chunk
    /// with `end_of_stream` marks an end that came without data (as Envoy delivers it).
    /// On the response side the context ends with the stream (or a local response). An
    /// unknown context answers [`DataOutcome::Unfiltered`].
    pub fn on_body(
        &mut self,
        ctx: HttpContextId,
        dir: Direction,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<DataOutcome, GuestTrap> {
        if let Some(t) = &self.poisoned {
            return Err(t.clone());
        }
        let Some(c) = self.live(ctx) else {
            return Ok(DataOutcome::Unfiltered);
        };
        let buf = c.body_mut(dir);
        buf.extend_from_slice(chunk);
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        *c.resumed_mut(dir) = false;
        let ex = self.exports.clone();
        let (name, f) = match dir {
            Direction::Request => ("proxy_on_request_body", &ex.on_request_body),
            Direction::Response => ("proxy_on_response_body", &ex.on_response_body),
        };
        let action = match f {
            Some(f) => {
                self.store.data_mut().effective_context = ctx.id;
                self.invoke(name, f, (ctx.id, len, u32::from(end_of_stream)))?
            }
            None => ACTION_CONTINUE,
        };
        self.data_outcome(ctx.id, dir, action == ACTION_CONTINUE, end_of_stream, false)
    }

    /// The trailers of `dir`: `proxy_on_{request,response}_trailers(id, count)`. They end the
    /// stream: `Continue` hands back the rest of the buffered body and the trailers.
    pub fn on_trailers(
        &mut self,
        ctx: HttpContextId,
        dir: Direction,
        trailers: &[(String, String)],
    ) -> Result<DataOutcome, GuestTrap> {
        if let Some(t) = &self.poisoned {
            return Err(t.clone());
        }
        let Some(c) = self.live(ctx) else {
            return Ok(DataOutcome::Unfiltered);
        };
        let map = c.trailers_mut(dir);
        map.clear();
        map.extend(lower_pairs(trailers));
        let n = map.len() as u32;
        *c.resumed_mut(dir) = false;
        let ex = self.exports.clone();
        let (name, f) = match dir {
            Direction::Request => ("proxy_on_request_trailers", &ex.on_request_trailers),
            Direction::Response => ("proxy_on_response_trailers", &ex.on_response_trailers),
        };
        let action = match f {
            Some(f) => {
                self.store.data_mut().effective_context = ctx.id;
                self.invoke(name, f, (ctx.id, n))?
            }
            None => ACTION_CONTINUE,
        };
        self.data_outcome(ctx.id, dir, action == ACTION_CONTINUE, true, true)
    }

    /// For a body or trailers phase that returned [`DataOutcome::Paused`] (`trailers`: it was
    /// the trailers): its outcome once resumed; `None` while still paused or if unknown.
    pub fn poll_data(
        &mut self,
        ctx: HttpContextId,
        dir: Direction,
        trailers: bool,
    ) -> Option<Result<DataOutcome, GuestTrap>> {
        self.live(ctx)?;
        match self.data_outcome(ctx.id, dir, false, true, trailers) {
            Ok(DataOutcome::Paused) => None,
            other => Some(other),
        }
    }

    fn data_outcome(
        &mut self,
        id: u32,
        dir: Direction,
        continued: bool,
        at_end: bool,
        trailers: bool,
    ) -> Result<DataOutcome, GuestTrap> {
        let Some(c) = self.store.data_mut().http.get_mut(&id) else {
            return Ok(DataOutcome::Unfiltered);
        };
        let outcome = if c.reset {
            DataOutcome::LocalResponse {
                status: RESET_STATUS,
                headers: Vec::new(),
                body: Vec::new(),
            }
        } else if let Some(r) = c.local_reply.take() {
            let r = match dir {
                Direction::Request => self.local_reply_pass(id, r)?,
                // Response headers are not sent before the body phase ends: replaced as is.
                Direction::Response => r,
            };
            DataOutcome::LocalResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }
        } else if continued || *c.resumed_mut(dir) {
            DataOutcome::Continue {
                data: std::mem::take(c.body_mut(dir)),
                trailers: if trailers {
                    c.trailers_mut(dir).clone()
                } else {
                    Vec::new()
                },
            }
        } else if at_end {
            return Ok(DataOutcome::Paused);
        } else {
            return Ok(DataOutcome::Buffer);
        };
        let ends = match &outcome {
            DataOutcome::LocalResponse { .. } => dir == Direction::Response,
            _ => dir == Direction::Response && at_end,
        };
        if ends {
            self.finish_inner(id)?;
        }
        Ok(outcome)
    }

    /// A property the filter set on a live HTTP context (dot-joined path, as an access log
    /// names it: `edge_containment_rule`, `wasmx.edge_containment_rule`); what a proxy's
    /// access log would print for the request. `None` when not set or the context ended.
    pub fn context_property(&self, ctx: HttpContextId, name: &str) -> Option<Vec<u8>> {
        if ctx.vm != self.store.data().vm {
            return None;
        }
        self.store
            .data()
            .http
            .get(&ctx.id)
            .and_then(|c| c.properties.get(name).cloned())
    }

    /// Ends a context that got no (complete) response pass (local reply, upstream failure,
    /// client gone): `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`. Unknown contexts
    /// are ignored; a trap poisons the VM (see [`Vm::poisoned`]).
    pub fn finish(&mut self, ctx: HttpContextId) {
        if ctx.vm == self.store.data().vm {
            let _ = self.finish_inner(ctx.id);
        }
    }

    pub(super) fn finish_inner(&mut self, id: u32) -> Result<(), GuestTrap> {
        if !self.store.data().http.contains_key(&id) {
            return Ok(());
        }
        let ex = self.exports.clone();
        let result = (|| {
            if let Some(f) = &ex.on_done {
                self.store.data_mut().effective_context = id;
                self.invoke("proxy_on_done", f, id)?;
            }
            if let Some(f) = &ex.on_log {
                self.store.data_mut().effective_context = id;
                self.invoke("proxy_on_log", f, id)?;
            }
            if let Some(f) = &ex.on_delete {
                self.store.data_mut().effective_context = id;
                self.invoke("proxy_on_delete", f, id)?;
            }
            Ok(())
        })();
        let s = self.store.data_mut();
        if let Some(ctx) = s.http.remove(&id) {
            ctx.recycle(s);
        }
        result
    }
}
