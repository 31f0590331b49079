//! `Sandbox::start` and the binary: every service up, described in one JSON object.

use std::process::Stdio;

use sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client builds")
}

async fn assert_all_services_answer(describe: &Value) {
    for service in ["dap", "bds", "ld", "toucan"] {
        let base = describe[service]["base_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{service} has no base_url in {describe}"));
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        let stats = http()
            .get(format!("{base}/__sandbox/stats"))
            .send()
            .await
            .expect("service answers");
        assert_eq!(stats.status(), 200, "{service}");
        assert!(describe[service]["env"].is_object(), "{service} env");
    }
    assert_eq!(
        describe["dap"]["env"]["DAP_CLIENT_ID"],
        describe["dap"]["credentials"]["client_id"]
    );
}

#[tokio::test]
async fn start_runs_all_four_services_and_drop_stops_them() {
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .expect("starts");
    let describe = sandbox.describe();
    assert_all_services_answer(&describe).await;
    let dap = describe["dap"]["base_url"]
        .as_str()
        .expect("url")
        .to_owned();
    drop(sandbox);
    let mut stopped = false;
    for _ in 0..100 {
        if http()
            .get(format!("{dap}/__sandbox/stats"))
            .send()
            .await
            .is_err()
        {
            stopped = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(stopped);
}

#[tokio::test]
async fn only_the_requested_services_start() {
    let sandbox = Sandbox::start(SandboxConfig::none().with_dap(Default::default()))
        .await
        .expect("starts");
    let describe = sandbox.describe();
    assert!(describe["dap"].is_object());
    assert!(describe.get("bds").is_none() && describe.get("ld").is_none());
}

#[tokio::test]
async fn binary_prints_one_json_line_then_serves() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .args(["--dap-table", "canvas.tiny=1", "--dap-pacing", "0", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("binary runs");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::io::BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .expect("reads")
        .expect("one line");
    let describe: Value = serde_json::from_str(&line).expect("the line is JSON");
    assert_all_services_answer(&describe).await;
    child.kill().await.expect("stops");
}

#[tokio::test]
async fn binary_rejects_unknown_services_with_a_message() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .args(["--services", "dap,nope"])
        .output()
        .await
        .expect("binary runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown service `nope`"));
}
