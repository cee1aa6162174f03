//! `tcp_relay`: a transparent TCP relay that copies bytes both ways and does nothing else,
//! for `benches/pgbench.sh`.
//!
//! ```text
//! tcp_relay 127.0.0.1:6434 127.0.0.1:5432
//! ```
//!
//! It does not terminate TLS: the client's `SSLRequest` and TLS handshake pass through to
//! PostgreSQL untouched, so a run through it measures only what one more process and one
//! more loopback hop cost on this machine, the floor under any proxy in the data path
//! (a gateway that terminates TLS on both legs, parses and decides does strictly more).
//! Prints `ready` on stdout once listening. One tokio runtime, one worker per CPU.

use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(listen), Some(target)) = (args.first(), args.get(1)) else {
        eprintln!("usage: tcp_relay LISTEN_ADDR TARGET_ADDR");
        return ExitCode::from(2);
    };
    let (listen, target): (SocketAddr, SocketAddr) = match (listen.parse(), target.parse()) {
        (Ok(l), Ok(t)) => (l, t),
        _ => {
            eprintln!("tcp_relay: addresses must be IP:PORT");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(listen, target)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcp_relay: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: SocketAddr, target: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("ready");
    loop {
        let (mut client, _) = listener.accept().await?;
        tokio::spawn(async move {
            let Ok(mut upstream) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let _ = copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}
