//! TLS for the simulator: a provider serving `https`, and EMQX calling over TLS.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use exhook_hooks::Version;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::EmqxClient;

/// A server-side TLS connection tonic can serve.
pub struct TlsIo(TlsStream<TcpStream>);

impl tonic::transport::server::Connected for TlsIo {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl AsyncRead for TlsIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Accepted TLS connections of `listener` (failed handshakes dropped).
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> impl futures::Stream<Item = std::io::Result<TlsIo>> + Send + 'static {
    use futures::StreamExt as _;
    let ready = exhook_tls::accept_tls(listener, move || Arc::clone(&config), 256, Duration::from_secs(10), |_, _| {});
    tokio_stream::wrappers::ReceiverStream::new(ready).map(|(s, _)| Ok(TlsIo(s)))
}

impl EmqxClient {
    /// Connects over TLS to `addr`, sending `server_name` as SNI (unless `config` disables
    /// SNI) and offering ALPN `h2` (set on `config` here).
    pub async fn connect_tls(
        addr: SocketAddr,
        mut config: rustls::ClientConfig,
        server_name: ServerName<'static>,
        version: Version,
    ) -> Result<EmqxClient, tonic::transport::Error> {
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect_with_connector(tower::service_fn(move |_uri| {
                let (connector, name) = (connector.clone(), server_name.clone());
                async move {
                    let tcp = TcpStream::connect(addr).await?;
                    tcp.set_nodelay(true)?;
                    let tls = connector.connect(name, tcp).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                }
            }))
            .await?;
        Ok(EmqxClient::from_channel(channel, version))
    }
}
