//! canary-xds inside the test process (`serve::start`, on ports from the kernel): started with
//! a sender that stops it, and stopped within a bound.

use std::time::Duration;

use canary_xds::serve::{Listeners, Running, Settings, start};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Starts `serve` with `settings` on a free xDS port (`running.xds_addr`) and, with `admin`, an
/// admin server on another (`running.admin_addr`); the sender stops it.
pub async fn serve_in_process(settings: Settings, admin: bool) -> (Running, oneshot::Sender<()>) {
    let xds = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = if admin {
        Some(TcpListener::bind("127.0.0.1:0").await.unwrap())
    } else {
        None
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let running = start(settings, Listeners { xds, admin }, async {
        let _ = stopped.await;
    })
    .await
    .expect("canary-xds starts");
    (running, stop)
}

/// Stops what `serve_in_process` started, and waits (10 s at most) for it to end cleanly.
pub async fn stop_in_process(running: Running, stop: oneshot::Sender<()>) {
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running.done)
        .await
        .expect("shuts down in time")
        .unwrap()
        .unwrap();
}
