use std::time::Duration;

use bytes::Bytes;
use exhook_hooks::{Hook, HookRequest, Version, convert};
use exhook_proto::codec::RawCodec;
use exhook_proto::model::{EmptySuccess, LoadedResponse, ProviderLoadedRequest, ValuedResponse};
use prost::Message as _;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};

/// Plays EMQX against a gateway (or a provider): one package, one HTTP/2 connection.
#[derive(Debug, Clone)]
pub struct EmqxClient {
    version: Version,
    grpc: Grpc<Channel>,
    /// Sent as `grpc-timeout` (EMQX's `request_timeout`, 5 s by default).
    pub request_timeout: Duration,
}

impl EmqxClient {
    /// Connects to `url` (e.g. `http://127.0.0.1:9000`).
    pub async fn connect(url: &str, version: Version) -> Result<EmqxClient, tonic::transport::Error> {
        let channel = Endpoint::from_shared(url.to_owned())?.tcp_nodelay(true).connect().await?;
        Ok(EmqxClient::from_channel(channel, version))
    }

    /// Plays EMQX over an established channel (e.g. one over TLS).
    pub fn from_channel(channel: Channel, version: Version) -> EmqxClient {
        EmqxClient { version, grpc: Grpc::new(channel), request_timeout: Duration::from_secs(5) }
    }

    /// The package it speaks.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Sends pre-encoded bytes on `hook`'s path and decodes the reply as `D`.
    pub async fn call_raw<D>(&self, hook: Hook, body: Bytes) -> Result<D, tonic::Status>
    where
        D: prost::Message + Default + Send + 'static,
    {
        let mut grpc = self.grpc.clone();
        grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut request = tonic::Request::new(body);
        request.set_timeout(self.request_timeout);
        let path = http::uri::PathAndQuery::from_static(hook.path(self.version));
        Ok(grpc.unary(request, path, RawCodec::<D>::default()).await?.into_inner())
    }

    fn encode<R: HookRequest>(&self, request: &R) -> Bytes {
        match request.for_version(self.version) {
            Some(shaped) => shaped.encode_to_vec().into(),
            None => request.encode_to_vec().into(),
        }
    }

    /// `OnProviderLoaded` (BrokerInfo converted for v1).
    pub async fn loaded(&self, request: &ProviderLoadedRequest) -> Result<LoadedResponse, tonic::Status> {
        let body: Bytes = match self.version {
            Version::V1 => convert::loaded_request_to_v1(request).encode_to_vec().into(),
            _ => request.encode_to_vec().into(),
        };
        self.call_raw(exhook_hooks::Hook::ProviderLoaded, body).await
    }

    /// A valued hook (authenticate, authorize, publish).
    pub async fn valued<R: HookRequest>(&self, request: &R) -> Result<ValuedResponse, tonic::Status> {
        self.call_raw(R::HOOK, self.encode(request)).await
    }

    /// A notification hook (or `OnProviderUnloaded`).
    pub async fn notify<R: HookRequest>(&self, request: &R) -> Result<EmptySuccess, tonic::Status> {
        self.call_raw(R::HOOK, self.encode(request)).await
    }
}
