//! `h2-floor`: the HTTP/2 layer alone, as a gRPC server. Every stream on any path is read to
//! its end and answered with one fixed `ValuedResponse` (STOP_AND_RETURN, false) -- no
//! decoding, no routing, no provider: what `h2` itself costs per unary call, the floor under
//! both of the gateway's HTTP/2 sides. `scripts/callgrind.sh` counts its instructions per
//! call beside the provider's, haproxy's and the gateway's.
//!
//! ```text
//! h2-floor --port 7000     # prints "listening on ADDR"
//! ```

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

/// `ValuedResponse { type: STOP_AND_RETURN (2), bool_result: false }` with its gRPC prefix.
const ANSWER: &[u8] = &[0, 0, 0, 0, 4, 0x08, 0x02, 0x18, 0x00];

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let port: u16 = match std::env::args().skip_while(|a| a != "--port").nth(1) {
        Some(p) => p.parse()?,
        None => 0,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (io, _) = listener.accept().await?;
        let _ = io.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut connection) = h2::server::handshake(io).await else { return };
            while let Some(Ok((request, mut respond))) = connection.accept().await {
                tokio::spawn(async move {
                    let mut body = request.into_body();
                    while let Some(Ok(data)) = body.data().await {
                        let _ = body.flow_control().release_capacity(data.len());
                    }
                    let mut head = http::Response::new(());
                    head.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
                    let Ok(mut stream) = respond.send_response(head, false) else { return };
                    let _ = stream.send_data(Bytes::from_static(ANSWER), false);
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", HeaderValue::from_static("0"));
                    let _ = stream.send_trailers(trailers);
                });
            }
        });
    }
}
