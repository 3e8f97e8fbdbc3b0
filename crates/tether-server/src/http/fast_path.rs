//! The proxy route served ahead of axum's router: [`GatewayService`] answers
//! `/v1/proxy/{id}...` itself and hands every other request to the gateway's [`Router`].
//!
//! Why: the proxied call is the hot path, and axum's way to its handler (the route table
//! lookup, the URL parameters and the matched path in the request's extensions, the boxed
//! `from_fn` middleware, the extractors, the boxed handler future) is per-request work the
//! proxy does not need: its path has one shape, told apart by a prefix. What the router did
//! for the proxy is done here, in the same order: the request id, its span and the request
//! metrics under the same route label (`request_id`), the API key (`App`), then the handler,
//! whose own body limit, history, metrics and problem+json errors are unchanged; and what
//! axum does to every answer (`Content-Length` from an exact body size, no body on `HEAD`).
//!
//! A path the router would read differently goes to the router, so its answers stay the
//! router's: no id (`/v1/proxy/`, and `/v1/proxy` or `/v1/proxyx`, which are not the
//! prefix), and an id with percent-escapes (axum's `Path` decodes them, or refuses them).

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::FromRequestParts as _;
use axum::http::{HeaderValue, Method, Request, Response, header};
use axum::response::IntoResponse as _;
use axum::routing::future::RouteFuture;
use http_body::Body as _;
use tether_store::Store;
use tracing::Instrument as _;

use crate::http::auth::App;
use crate::http::request_id;
use crate::state::AppState;

/// The proxy's routes, as the router names them (the `route` label of the request metrics).
const PREFIX: &str = "/v1/proxy/";
const ROUTE_ID: &str = "/v1/proxy/{id}";
const ROUTE_SLASH: &str = "/v1/proxy/{id}/";
const ROUTE_PATH: &str = "/v1/proxy/{id}/{*path}";

/// The gateway's router with the proxy route answered ahead of it (see the module docs).
/// What `tether serve` serves; [`crate::Gateway::router`] remains the router alone, to mount
/// into another axum app.
pub struct GatewayService<S: Store> {
    state: AppState<S>,
    router: Router,
}

impl<S: Store> Clone for GatewayService<S> {
    fn clone(&self) -> Self {
        GatewayService {
            state: self.state.clone(),
            router: self.router.clone(),
        }
    }
}

impl<S: Store> GatewayService<S> {
    pub(crate) fn new(state: AppState<S>, router: Router) -> Self {
        GatewayService { state, router }
    }
}

/// The proxy route's label for `path` and where its id ends, when `path` is the proxy's and
/// the router would take its id as it is; `None` leaves the request to the router.
fn proxy_route(path: &str) -> Option<(&'static str, usize)> {
    let rest = path.strip_prefix(PREFIX)?;
    let id_len = rest.find('/').unwrap_or(rest.len());
    let id = &rest[..id_len];
    if id.is_empty() || id.contains('%') {
        return None;
    }
    // As the router matches them: `{*path}` takes one character or more.
    let route = match &rest[id_len..] {
        "" => ROUTE_ID,
        "/" => ROUTE_SLASH,
        _ => ROUTE_PATH,
    };
    Some((route, PREFIX.len() + id_len))
}

impl<S: Store> tower::Service<Request<Body>> for GatewayService<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Answer {
        match proxy_route(request.uri().path()) {
            Some((route, id_end)) => Answer::Proxy {
                future: Box::pin(proxied(self.state.clone(), request, route, id_end)),
            },
            None => Answer::Router {
                future: tower::Service::call(&mut self.router, request),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`GatewayService`]: the proxy's, or the router's.
    #[project = AnswerProj]
    pub enum Answer {
        Proxy { future: Pin<Box<dyn Future<Output = Response<Body>> + Send>> },
        Router { #[pin] future: RouteFuture<Infallible> },
    }
}

impl Future for Answer {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AnswerProj::Proxy { future } => future.as_mut().poll(cx).map(Ok),
            AnswerProj::Router { future } => future.poll(cx),
        }
    }
}

/// A proxied call as the router answered it: tracked, authenticated, then handed to the
/// proxy; `route` is its label, the id ends at `id_end` in the path.
async fn proxied<S: Store>(
    state: AppState<S>,
    request: Request<Body>,
    route: &'static str,
    id_end: usize,
) -> Response<Body> {
    let (tracked, span) = request_id::begin(&state, &request, route);
    let head = request.method() == Method::HEAD;
    let mut response = async {
        let (mut parts, body) = request.into_parts();
        if let Err(rejection) = App::from_request_parts(&mut parts, &state).await {
            return rejection.into_response();
        }
        // The path is shared (a reference count), not copied, to lend the handler its id.
        let uri = parts.uri.clone();
        let id = &uri.path()[PREFIX.len()..id_end];
        crate::proxy::answer(&state, id, Request::from_parts(parts, body)).await
    }
    .instrument(span)
    .await;
    // What axum's router does to every answer.
    if !response.headers().contains_key(header::CONTENT_LENGTH)
        && let Some(length) = response.body().size_hint().exact()
    {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    if head {
        *response.body_mut() = Body::empty();
    }
    request_id::finish(&state, tracked, Some(Cow::Borrowed(route)), &mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_proxy_route_with_a_plain_id_is_taken() {
        let id = "conn_0123456789abcdef0123456789abcdef";
        let path = |rest: &str| {
            let mut path = String::from("/v1/proxy/");
            path.push_str(id);
            path.push_str(rest);
            path
        };
        let end = PREFIX.len() + id.len();
        assert_eq!(proxy_route(&path("")), Some((ROUTE_ID, end)));
        assert_eq!(proxy_route(&path("/")), Some((ROUTE_SLASH, end)));
        assert_eq!(proxy_route(&path("/v1/deals")), Some((ROUTE_PATH, end)));
        assert_eq!(proxy_route(&path("//")), Some((ROUTE_PATH, end)));
        for other in [
            "/v1/proxy",
            "/v1/proxy/",
            "/v1/proxy//v1/deals",
            "/v1/proxyx/conn_1/v1/deals",
            "/v1/proxy/conn%5F1/v1/deals",
            "/v1/connections",
            "/",
        ] {
            assert_eq!(proxy_route(other), None, "{other}");
        }
    }
}
