//! `grpc.health.v1.Health/Check`, the standard gRPC health check (the gateway probes it, and
//! so do Kubernetes' gRPC probes). tonic-health is not in the workspace's lock, and the two
//! messages are small enough to declare here.
//!
//! Service `""` and the three `<package>.HookProvider` names answer SERVING, and NOT_SERVING
//! once the server is shutting down; any other name is NOT_FOUND, as the protocol asks.
//! `Watch` (a stream) is UNIMPLEMENTED.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use exhook_hooks::Version;
use tonic::body::Body;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::service::{BoxFuture, Shared};

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    /// The service asked about; `""` for the whole server.
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    /// [`SERVING`] or [`NOT_SERVING`].
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// `ServingStatus.SERVING`.
pub const SERVING: i32 = 1;
/// `ServingStatus.NOT_SERVING`.
pub const NOT_SERVING: i32 = 2;

/// The health service's gRPC name.
pub const SERVICE: &str = "grpc.health.v1.Health";

pub(crate) struct Health<P> {
    shared: Arc<Shared<P>>,
}

impl<P> Health<P> {
    pub(crate) fn new(shared: Arc<Shared<P>>) -> Self {
        Health { shared }
    }
}

impl<P> Clone for Health<P> {
    fn clone(&self) -> Self {
        Health { shared: Arc::clone(&self.shared) }
    }
}

impl<P> NamedService for Health<P> {
    const NAME: &'static str = SERVICE;
}

impl<P: Send + Sync + 'static> tower::Service<http::Request<Body>> for Health<P> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != "/grpc.health.v1.Health/Check" {
            return Box::pin(async { Ok(Status::unimplemented("only Check is served").into_http()) });
        }
        let check = Check { shared: Arc::clone(&self.shared) };
        Box::pin(async move {
            Ok(Grpc::new(ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default()).unary(check, req).await)
        })
    }
}

struct Check<P> {
    shared: Arc<Shared<P>>,
}

impl<P: Send + Sync + 'static> UnaryService<HealthCheckRequest> for Check<P> {
    type Response = HealthCheckResponse;
    type Future = BoxFuture<Result<Response<HealthCheckResponse>, Status>>;

    fn call(&mut self, request: Request<HealthCheckRequest>) -> Self::Future {
        let service = request.into_inner().service;
        let known = service.is_empty() || Version::NEWEST_FIRST.iter().any(|v| v.service() == service);
        let status = if self.shared.is_serving() { SERVING } else { NOT_SERVING };
        Box::pin(async move {
            if known {
                Ok(Response::new(HealthCheckResponse { status }))
            } else {
                Err(Status::not_found(format!("unknown service {service:?}")))
            }
        })
    }
}
