//! Slow clients cannot hold the server's connections: headers must arrive
//! within `--header-read-timeout`, a whole body within `--body-read-timeout`,
//! and at most `--max-connections` connections are open at once, while
//! WebSockets, once upgraded, stay open as long as they like.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Small bounds, so that a test sees them run out in a few seconds.
const SHORT_TIMEOUTS: [&str; 6] = [
    "--header-read-timeout",
    "1s",
    "--body-read-timeout",
    "2s",
    "--max-connections",
    "20",
];

/// Far longer than any bound under test: a connection still open after it
/// was held open by the server, not merely slow to be closed.
const PATIENCE: Duration = Duration::from_secs(15);

fn address(server: &Server) -> String {
    server.base_url.trim_start_matches("http://").to_owned()
}

/// Everything the server sends until it closes the connection, or `None`
/// if it is still open after `limit`. A reset after the last byte counts as
/// closed.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let reading = async {
        let mut buffer = [0_u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => received.extend_from_slice(&buffer[..read]),
            }
        }
    };
    tokio::time::timeout(limit, reading).await.ok()?;
    Some(received)
}

/// The status, headers (lower-cased names) and JSON body of one HTTP/1.1
/// response read whole.
fn parse_response(bytes: &[u8]) -> (u16, Vec<(String, String)>, Value) {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("a whole response head: {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let body = serde_json::from_str(body).unwrap_or_else(|error| panic!("JSON {body:?}: {error}"));
    (status, headers, body)
}

/// Open connections on the API's listener, as `/metrics` (on its own
/// address, so reading it takes no API connection) reports them.
async fn open_connections(server: &Server) -> f64 {
    server
        .metrics()
        .await
        .get(r#"plangraph_http_connections_open{listener="api"}"#)
}

async fn open_connections_become(server: &Server, count: f64) {
    eventually(Duration::from_secs(15), async || {
        (open_connections(server).await == count).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_completes_its_headers_is_disconnected_while_others_are_served() {
    let server = Server::start_with(Backend::Sqlite, &SHORT_TIMEOUTS).await;
    let mut dribbler = TcpStream::connect(address(&server)).await.expect("connect");
    dribbler
        .write_all(b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        .await
        .expect("send part of the headers");
    let mut silent = TcpStream::connect(address(&server)).await.expect("connect");

    let answer = server.admin().send("{ __typename }", json!({})).await;
    assert_eq!(answer.data["__typename"], "Query", "{answer:?}");

    assert!(
        until_closed(&mut dribbler, PATIENCE).await.is_some(),
        "the connection with half its headers was closed"
    );
    assert!(
        until_closed(&mut silent, PATIENCE).await.is_some(),
        "the connection that sent nothing was closed"
    );
}

/// Sends `head` and then the body a byte every 300 ms — each byte well
/// within any per-read timeout — until the server answers; returns the
/// answer once the server has closed the connection.
async fn dribble_a_body(server: &Server, head: String) -> Vec<u8> {
    let stream = TcpStream::connect(address(server)).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.expect("send head");
    let dribbling = tokio::spawn(async move {
        for byte in br#"{"query":"{ __typename }"}"#.iter().cycle() {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut received = Vec::new();
    let reading = async {
        let mut buffer = [0_u8; 4096];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => {
                    dribbling.abort();
                    received.extend_from_slice(&buffer[..read]);
                }
            }
        }
    };
    let closed = tokio::time::timeout(PATIENCE, reading).await;
    dribbling.abort();
    assert!(closed.is_ok(), "the server closed the connection");
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_dribbled_past_the_body_read_timeout_gets_408_naming_the_flag() {
    let server = Server::start_with(Backend::Sqlite, &SHORT_TIMEOUTS).await;
    let key = server.bootstrap_key.clone().expect("admin key");
    for (path, accept) in [
        ("/graphql", "application/json"),
        ("/mcp", "application/json, text/event-stream"),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\
             Accept: {accept}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        );

        let (status, headers, body) = parse_response(&dribble_a_body(&server, head).await);

        assert_eq!(status, 408, "{path}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{path}: {body}"
        );
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("--body-read-timeout"),
            "{path}: the refusal names the flag: {message}"
        );
        assert!(
            headers
                .iter()
                .any(|(name, value)| name == "connection" && value == "close"),
            "{path}: the response says the connection closes: {headers:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_whole_is_served_under_a_short_body_read_timeout() {
    let server = Server::start_with(Backend::Sqlite, &SHORT_TIMEOUTS).await;
    let body = r#"{"query":"{ __typename }"}"#;
    let mut stream = TcpStream::connect(address(&server)).await.expect("connect");
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");

    let received = until_closed(&mut stream, PATIENCE)
        .await
        .expect("the server answers and closes as asked");
    let (status, _, answer) = parse_response(&received);

    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["__typename"], "Query", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_the_next_connection_waits_until_one_closes() {
    let server = Server::start_with(
        Backend::Sqlite,
        &[
            "--max-connections",
            "20",
            // The held sockets say nothing; they must outlast the test.
            "--header-read-timeout",
            "5m",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    open_connections_become(&server, 0.0).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(address(&server)).await.expect("connect"));
    }
    open_connections_become(&server, 20.0).await;

    let client = server.admin();
    let mut twenty_first =
        tokio::spawn(async move { client.send("{ __typename }", json!({})).await });
    let early = tokio::time::timeout(Duration::from_millis(500), &mut twenty_first).await;
    assert!(
        early.is_err(),
        "the 21st connection is not served while 20 are open: {early:?}"
    );
    assert_eq!(open_connections(&server).await, 20.0, "nor is it accepted");

    held.truncate(15);
    let answer = tokio::time::timeout(PATIENCE, twenty_first)
        .await
        .expect("answered once connections closed")
        .expect("the request task");
    assert_eq!(answer.data["__typename"], "Query", "{answer:?}");
    // The 21st client has gone with its task; 15 are left.
    open_connections_become(&server, 15.0).await;
    drop(held);
    open_connections_become(&server, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_outlives_the_header_and_body_timeouts_and_keeps_its_connection_slot() {
    let mut args = SHORT_TIMEOUTS.to_vec();
    args.extend(["--metrics-listen", "127.0.0.1:0"]);
    let server = Server::start_with(Backend::Sqlite, &args).await;
    let team = Team::new(&server).await;
    let mut socket = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    socket
        .subscribe(PLAN_EVENTS, json!({ "projectId": team.project }))
        .await;
    server.wait_for_subscriptions(1).await;

    // Past both timeouts, with nothing sent either way.
    socket.expect_nothing(Duration::from_secs(3)).await;
    // The team's idle HTTP connections were closed by the header timeout;
    // the WebSocket still holds its connection.
    open_connections_become(&server, 1.0).await;
    let plan = team.plan("after the timeouts", "READY").await;

    let event = socket.next_event().await;
    assert_eq!(event["plan"]["id"], plan.as_str(), "{event}");
    socket.disconnect().await;
    open_connections_become(&server, 0.0).await;
}
