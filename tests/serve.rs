//! `wgkv serve` on the real model, on a free loopback port: bad requests get
//! OpenAI's error objects and the server keeps serving; the real `openai`
//! Python package talks to it (tests/serve_openai.py); a load of 8 clients ×
//! 20 requests completes with every answer its own and memory flat.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A server process, killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(args: &[&str]) -> Option<Server> {
        let model = common::real_model()?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wgkv"));
        cmd.args(["--model", model.to_str().unwrap(), "serve", "--port", "0"]).args(args);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir());
        }
        cmd.env_remove("WGKV_API_KEY");
        let mut child = cmd.spawn().expect("run wgkv serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => match line.split_once("listening on http://") {
                    Some((_, a)) => break a.trim().to_string(),
                    None => seen.push_str(&(line + "\n")),
                },
                _ => {
                    let _ = child.kill();
                    panic!("wgkv serve stopped before listening: {seen}");
                }
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Some(Server { child, addr })
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// An OpenAI error object with this status, param and code.
    #[track_caller]
    fn assert_error(&self, status: u16, param: Option<&str>, code: Option<&str>) {
        assert_eq!(self.status, status, "{}", self.body);
        let e = &self.json()["error"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", self.body);
        assert!(e["type"].is_string(), "{}", self.body);
        assert_eq!(e["param"].as_str(), param, "{}", self.body);
        assert_eq!(e["code"].as_str(), code, "{}", self.body);
    }
}

/// One HTTP/1.1 request (the connection closes after it).
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A server may answer (413) before reading the whole body and close.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP reply: {text}"));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    Reply { status, head: head.to_string(), body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn post(addr: &str, path: &str, key: Option<&str>, body: &str) -> Reply {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    http(addr, "POST", path, &headers, body.as_bytes())
}

const KEY: &str = "test-key-123";

#[test]
fn bad_requests_get_openai_error_objects_and_the_server_keeps_serving() {
    // A small context and a streaming server policy, so that `full` per request (14 MiB) is larger than --kv-memory allows.
    let Some(srv) = Server::start(&["--ctx", "512", "--kv", "streaming:budget=64", "--kv-memory", "8M", "--api-key", KEY]) else { return };
    let a = &srv.addr;
    let chat = "/v1/chat/completions";
    let ok_body = r#"{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0}"#;
    post(a, chat, None, ok_body).assert_error(401, None, Some("invalid_api_key"));
    post(a, chat, Some("wrong"), ok_body).assert_error(401, None, Some("invalid_api_key"));
    let get = |path: &str, key: Option<&str>| {
        let auth = key.map(|k| format!("Bearer {k}"));
        http(a, "GET", path, &auth.iter().map(|v| ("Authorization", v.as_str())).collect::<Vec<_>>(), b"")
    };
    assert_eq!(get("/health", None).status, 200, "health needs no key");
    get("/v1/models", None).assert_error(401, None, Some("invalid_api_key"));
    let k = Some(KEY);
    post(a, chat, k, "{not json").assert_error(400, None, None);
    post(a, chat, k, "[1, 2]").assert_error(400, None, None);
    post(a, chat, k, r#"{"messages": "hello"}"#).assert_error(400, Some("messages"), None);
    post(a, chat, k, r#"{"messages": []}"#).assert_error(400, Some("messages"), None);
    post(a, chat, k, r#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}"#).assert_error(400, Some("max_tokens"), None);
    post(a, chat, k, r#"{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}"#).assert_error(400, Some("temperature"), None);
    post(a, chat, k, r#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}"#).assert_error(400, Some("max_tokens"), None);
    post(a, chat, k, r#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 100000000000}"#).assert_error(
        400,
        Some("messages"),
        Some("context_length_exceeded"),
    );
    let long = format!(r#"{{"messages": [{{"role": "user", "content": "{}"}}]}}"#, "word ".repeat(700));
    post(a, chat, k, &long).assert_error(400, Some("messages"), Some("context_length_exceeded"));
    post(a, "/v1/completions", k, &format!(r#"{{"prompt": "{}"}}"#, "word ".repeat(700))).assert_error(400, Some("prompt"), Some("context_length_exceeded"));
    let huge = format!(r#"{{"prompt": "{}"}}"#, "x".repeat(5 << 20));
    post(a, "/v1/completions", k, &huge).assert_error(413, None, None);
    post(a, chat, k, r#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}"#).assert_error(404, Some("model"), Some("model_not_found"));
    get("/v1/nothing", k).assert_error(404, None, None);
    get("/v1/models/gpt-4o", k).assert_error(404, Some("model"), Some("model_not_found"));
    post(a, chat, k, r#"{"messages": [{"role": "user", "content": "x"}], "kv": "fancy:budget=3"}"#).assert_error(400, Some("kv"), None);
    post(a, chat, k, r#"{"messages": [{"role": "user", "content": "x"}], "kv": "full"}"#).assert_error(400, Some("kv"), Some("kv_memory_exceeded"));
    post(a, "/v1/completions", k, r#"{"prompt": [999999999]}"#).assert_error(400, Some("prompt"), None);
    // After all that, it still answers, under the server's policy and under one a request names.
    for body in [ok_body, r#"{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "kv": "streaming:budget=32"}"#] {
        let r = post(a, chat, k, body);
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(
            v["usage"]["completion_tokens"].as_u64().unwrap() + v["usage"]["prompt_tokens"].as_u64().unwrap(),
            v["usage"]["total_tokens"].as_u64().unwrap()
        );
    }
    let m = get("/metrics", k);
    assert_eq!(m.status, 200);
    assert!(m.head.to_ascii_lowercase().contains("content-type: text/plain"), "{}", m.head);
    assert!(m.body.contains("wgkv_requests_total "), "{}", m.body);
    assert!(m.body.contains("wgkv_kv_bytes_resident "), "{}", m.body);
}

#[test]
fn a_full_queue_answers_503_and_a_gone_client_cancels_its_generation() {
    let Some(srv) = Server::start(&["--ctx", "512", "--parallel", "1", "--queue", "1"]) else { return };
    let a = srv.addr.clone();
    let body = r#"{"prompt": "Once upon a time", "max_tokens": 48, "temperature": 0, "kv": "full"}"#;
    let replies: Vec<Reply> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..5).map(|_| s.spawn(|| post(&a, "/v1/completions", None, body))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let busy: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    assert!(busy.len() >= 2, "one generating and one queued at most: {:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    for r in &busy {
        r.assert_error(503, None, Some("server_busy"));
        assert!(r.head.to_ascii_lowercase().contains("retry-after: 1"), "{}", r.head);
    }
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 503));
    // A streaming client that reads one event and leaves.
    {
        let mut s = TcpStream::connect(&a).unwrap();
        let body = r#"{"prompt": "Once upon a time", "max_tokens": 400, "stream": true}"#;
        write!(s, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        let mut first = [0u8; 64];
        let n = s.read(&mut first).unwrap();
        assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    }
    let cancelled = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        http(&a, "GET", "/metrics", &[], b"").body.contains("wgkv_requests_cancelled_total 1\n")
    });
    assert!(cancelled, "the generation stops once its client is gone");
    let r = post(&a, "/v1/completions", None, r#"{"prompt": "Hello", "max_tokens": 1}"#);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Whether `python3` can import the `openai` package; CI (`.ci/run`) installs it,
/// so under `WGKV_REQUIRE_MODEL` its absence fails instead of skipping.
fn python_openai() -> bool {
    let ok = Command::new("python3").args(["-c", "import openai"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var_os("WGKV_REQUIRE_MODEL").is_some_and(|v| v != "0") {
            panic!("WGKV_REQUIRE_MODEL is set but python3 cannot import openai (python3 -m pip install openai)");
        }
        eprintln!("SKIP: python3 cannot import openai (python3 -m pip install openai)");
    }
    ok
}

#[test]
fn the_openai_python_client_chats_streams_completes_and_continues_a_conversation() {
    if !python_openai() {
        return;
    }
    let Some(srv) = Server::start(&["--ctx", "1024", "--api-key", KEY]) else { return };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve_openai.py");
    let out = Command::new("python3").arg(script).args([format!("http://{}/v1", srv.addr), KEY.to_string()]).output().unwrap();
    let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "tests/serve_openai.py failed:\n{so}\n{se}");
    assert!(so.contains("all checks passed"), "{so}\n{se}");
}

#[test]
fn eight_clients_times_twenty_requests_each_get_their_own_answer_with_memory_flat() {
    // Room for the 4 GPU caches of 128 tokens the requests generate in (about
    // 4 MiB each) and some 20 conversations parked in host memory: most of the
    // 176 are dropped as the load goes on.
    let Some(srv) = Server::start(&["--ctx", "128", "--parallel", "4", "--kv-memory", "24M"]) else { return };
    let a = srv.addr.clone();
    let ask = |client: u32, i: u32| {
        let n = 1000 + client * 1000 + i * 37;
        // Repetition makes even a 135M model copy the number (a plain "the number is N" it garbles for 1000, 5555).
        let body = format!(r#"{{"prompt": "code={n}\ncode={n}\ncode={n}\ncode=", "max_tokens": 6, "temperature": 0}}"#);
        let r = post(&a, "/v1/completions", None, &body);
        assert_eq!(r.status, 200, "{}", r.body);
        let text = r.json()["choices"][0]["text"].as_str().unwrap().to_string();
        (n, text)
    };
    let round = |requests: u32| -> Vec<(u32, String)> {
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..8).map(|c| s.spawn(move || (0..requests).map(|i| ask(c, i)).collect::<Vec<_>>())).collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        })
    };
    // Warm up: the GPU caches get made, parked conversations fill the limit, the allocator settles.
    round(2);
    round(2);
    let before = srv.rss_kib();
    let answers = round(20);
    let after = srv.rss_kib();
    assert_eq!(answers.len(), 160, "every request answered");
    let right = answers.iter().filter(|(n, text)| text.contains(&n.to_string())).count();
    let wrong: Vec<_> = answers.iter().filter(|(n, text)| !text.contains(&n.to_string())).take(5).collect();
    assert_eq!(right, 160, "each answer repeats its own number; some did not: {wrong:?}");
    let metrics = || http(&a, "GET", "/metrics", &[], b"").body;
    let value = |m: &str, name: &str| m.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).map(|v| v.parse::<f64>().unwrap()).unwrap();
    // The engine publishes its state just after the last answers go out.
    let mut m = metrics();
    for _ in 0..50 {
        if value(&m, "wgkv_requests_active") == 0.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        m = metrics();
    }
    assert!(value(&m, "wgkv_kv_bytes_resident") <= value(&m, "wgkv_kv_bytes_limit"), "{m}");
    assert!(value(&m, "wgkv_kv_cache_evictions_total") > 0.0, "the limit holds some 20 conversations, not 176: {m}");
    assert_eq!(value(&m, "wgkv_requests_active"), 0.0, "{m}");
    assert_eq!(value(&m, "wgkv_queue_depth"), 0.0, "{m}");
    let grew = after as i64 - before as i64;
    assert!(grew < 48 * 1024, "RSS grew by {grew} KiB over 160 requests ({before} KiB before, {after} KiB after)");
}
