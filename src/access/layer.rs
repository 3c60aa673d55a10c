//! The authentication layer in front of every gRPC service. It resolves the bearer token and,
//! over mutual TLS, the client certificate before any handler runs, so no handler can forget to
//! check them. Only the standard health service is open without a credential: orchestrators
//! probe it, and it reveals nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use std::sync::Arc;

use super::{Access, SystemLimits};

const OPEN_PATH_PREFIX: &str = "/grpc.health.v1.Health/";

#[derive(Clone)]
pub struct AuthLayer {
    access: Arc<Access>,
    limits: Arc<SystemLimits>,
}

impl AuthLayer {
    pub fn new(access: Arc<Access>, limits: Arc<SystemLimits>) -> Self {
        Self { access, limits }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            access: self.access.clone(),
            limits: self.limits.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    access: Arc<Access>,
    limits: Arc<SystemLimits>,
}

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone is not ready; keep the ready service for this call (tower's usual pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let access = self.access.clone();
        let limits = self.limits.clone();
        Box::pin(async move {
            if request.uri().path().starts_with(OPEN_PATH_PREFIX) {
                return inner.call(request).await;
            }
            let token = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(super::bearer_token);
            // Over mutual TLS the connection carries the member's certificate (leaf first).
            let certificate = request
                .extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(TlsConnectInfo::peer_certs)
                .and_then(|chain| chain.first().map(|leaf| leaf.to_vec()));
            if token.is_none() && certificate.is_none() {
                return Ok(Status::unauthenticated(
                    "missing credential: send `authorization: Bearer <token>` (see `lienthong \
                     systems add`) or connect with a registered client certificate",
                )
                .into_http());
            }
            match access.authenticate(token, certificate.as_deref()).await {
                Ok(caller) => {
                    if let Err(throttled) = limits.call(&caller.system) {
                        return Ok(Status::from(throttled).into_http());
                    }
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(failure) => Ok(Status::unauthenticated(failure.to_string()).into_http()),
            }
        })
    }
}
