//! A TCP proxy in front of PostgreSQL, for database outages.

use std::sync::Arc;

use super::{Database, Server};

/// A TCP proxy in front of PostgreSQL that a test can cut and restore, to
/// simulate a database outage without touching the machine's database.
pub struct Proxy {
    pub port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(target: &'static str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("address").port();
        let (cut, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *watch.borrow() {
                    continue; // refused: dropping the socket closes it
                }
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Proxy { port, cut }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }

    /// A server on `database` that reaches it through this proxy. It gives up
    /// waiting for a connection after a second, so requests during a cut fail
    /// fast.
    pub async fn launch_server(&self, database: Arc<Database>) -> Server {
        let url = database.url().expect("a PostgreSQL database");
        let name = url.rsplit('/').next().expect("database name");
        let proxied = format!("postgres://postgres@127.0.0.1:{}/{name}", self.port);
        let args = [
            "--database-url",
            &proxied,
            "--database-acquire-timeout",
            "1s",
        ];
        Server::launch(database, args.map(str::to_owned).to_vec()).await
    }
}
