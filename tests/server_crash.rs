//! `lakefs-fuse serve` killed with SIGKILL in the middle of an upload loop keeps every upload that got a 2xx and
//! serves it byte-identical after a restart; an interrupted commit is all or nothing.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "AKIAIOSFOLQUICKSTART";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data_dir: &std::path::Path, port: u16) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_lakefs-fuse"))
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}/api/v1"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::blocking_get(&format!("{}/healthcheck", server.base)) {
                if r == 204 {
                    return server;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not become healthy");
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tiny blocking helpers over a current-thread runtime, so the test reads top to bottom.
mod reqwest {
    pub use ::reqwest::*;
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        static CLIENT: Client = Client::builder().timeout(std::time::Duration::from_secs(10)).build().unwrap();
    }
    pub fn run<F: std::future::Future>(f: F) -> F::Output {
        RT.with(|rt| rt.block_on(f))
    }
    pub fn client() -> Client {
        CLIENT.with(Client::clone)
    }
    pub fn blocking_get(url: &str) -> Result<u16> {
        run(async { Ok(client().get(url).send().await?.status().as_u16()) })
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn content(i: usize) -> Vec<u8> {
    // Distinct, non-trivial bodies of varying size (up to ~300 KiB) so partial writes would be visible.
    let len = 1000 + (i * 7919) % 300_000;
    (0..len).map(|j| ((i * 31 + j * 17) % 251) as u8).collect()
}

#[test]
fn kill_during_upload_loop_keeps_every_acknowledged_upload() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start(dir.path(), port);
    let base = server.base.clone();
    let status = reqwest::run(async {
        reqwest::client()
            .post(format!("{base}/repositories"))
            .basic_auth(KEY, Some(SECRET))
            .json(&serde_json::json!({"name": "crash", "storage_namespace": "local://crash"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 201);

    // Upload from a thread; kill the server from here while the loop runs.
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let uploader = std::thread::spawn({
        let base = base.clone();
        let progress = progress.clone();
        move || {
            let mut acknowledged = Vec::new();
            for i in 0..200 {
                let result = reqwest::run(async {
                    reqwest::client()
                        .post(format!("{base}/repositories/crash/branches/main/objects"))
                        .query(&[("path", format!("files/{i:03}.bin"))])
                        .basic_auth(KEY, Some(SECRET))
                        .body(content(i))
                        .send()
                        .await
                });
                match result {
                    Ok(r) if r.status().as_u16() == 201 => {
                        acknowledged.push(i);
                        progress.store(acknowledged.len(), std::sync::atomic::Ordering::SeqCst);
                    }
                    _ => break,
                }
            }
            acknowledged
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && progress.load(std::sync::atomic::Ordering::SeqCst) < 50 {
        std::thread::sleep(Duration::from_millis(1));
    }
    server.kill();
    let acknowledged = uploader.join().unwrap();
    assert!(!acknowledged.is_empty(), "no upload finished before the kill");
    assert!(acknowledged.len() < 200, "the kill came too late to interrupt the loop");

    let server = Server::start(dir.path(), port);
    for i in &acknowledged {
        let body = reqwest::run(async {
            let r = reqwest::client()
                .get(format!("{}/repositories/crash/refs/main/objects", server.base))
                .query(&[("path", format!("files/{i:03}.bin"))])
                .basic_auth(KEY, Some(SECRET))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status().as_u16(),
                200,
                "acknowledged upload {i} missing after restart"
            );
            r.bytes().await.unwrap()
        });
        assert_eq!(
            body.as_ref(),
            content(*i).as_slice(),
            "upload {i} differs after restart"
        );
    }
    // The restarted store is usable: commit what survived.
    let status = reqwest::run(async {
        reqwest::client()
            .post(format!("{}/repositories/crash/branches/main/commits", server.base))
            .basic_auth(KEY, Some(SECRET))
            .json(&serde_json::json!({"message": "after crash"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 201);
}
