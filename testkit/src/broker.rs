//! A private tansu broker for a test that stops and restarts it.

/// The tansu broker binary: `tansu` on `PATH`, else `$CARGO_HOME/bin/tansu`
/// or `~/.cargo/bin/tansu` (where `scripts/infra.sh kafka` installs it).
pub fn tansu_binary() -> Option<std::path::PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("tansu"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".cargo"))
        });
    on_path
        .into_iter()
        .chain(cargo_home.map(|home| home.join("bin").join("tansu")))
        .find(|candidate| candidate.is_file())
}

/// A local port for a server a test stops and starts again: picked below the
/// kernel's ephemeral range, so no outgoing connection and no [`crate::free_port`]
/// of another test takes it while the server is down.
fn restartable_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    for _ in 0..1000 {
        let random = (uuid::Uuid::new_v4().as_u128() % u128::from(high - low)) as u16;
        let port = low + random;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free local port in {low}..{high}")
}

/// A private Kafka-protocol broker (tansu) on a port of its own, for a test
/// that stops and restarts its broker: the shared one other tests use
/// (`TEST_KAFKA_BROKERS`) is never touched. Killed, and its data deleted, when
/// dropped.
///
/// Its storage is SQLite in a temporary folder of its own, so like a Kafka
/// broker it keeps its topics, records, consumer group offsets and producer
/// state when killed and started again.
pub struct TestBroker {
    port: u16,
    /// The broker's working directory: `tansu.db` (and its WAL) and `tansu.log`.
    dir: std::path::PathBuf,
    process: Option<tokio::process::Child>,
}

impl TestBroker {
    /// Starts a broker on a free port and waits until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("shopmesh-tansu-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir)?;
        // tansu loads a .env from its working directory or the nearest parent
        // folder that has one: this empty one ends the search.
        std::fs::write(dir.join(".env"), "")?;
        let mut broker = Self {
            port: restartable_port(),
            dir,
            process: None,
        };
        broker.restart().await?;
        Ok(broker)
    }

    /// `127.0.0.1:<port>`, for `KAFKA_BROKERS`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Client settings for this broker, with every default.
    pub fn settings(&self) -> shopmesh_events::EventsSettings {
        shopmesh_events::EventsSettings::for_brokers(&self.brokers(), "test-broker")
    }

    /// Kills the broker (SIGKILL: no clean shutdown, as a crashed or
    /// unplugged broker) and waits until the process is gone.
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.start_kill();
            let _ = process.wait().await;
        }
    }

    /// Starts the broker (again) on the same port and with the same data, and
    /// waits until it listens. A no-op when it runs.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.process.is_some() {
            return Ok(());
        }
        let Some(binary) = tansu_binary() else {
            anyhow::bail!(
                "the tansu broker is not installed (not on PATH nor in ~/.cargo/bin): \
                 `scripts/infra.sh kafka` installs it"
            );
        };
        let url = format!("tcp://127.0.0.1:{}", self.port);
        // TEST_TANSU_LOG=<file>: the broker's output appended there instead
        // (kept after the test, for debugging).
        let log_path = std::env::var_os("TEST_TANSU_LOG")
            .map_or_else(|| self.dir.join("tansu.log"), std::path::PathBuf::from);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut process = tokio::process::Command::new(binary)
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            // A sqlite:// path is relative to the working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(status) = process.try_wait()? {
                let output = std::fs::read_to_string(&log_path).unwrap_or_default();
                let last: Vec<&str> = output.lines().rev().take(10).collect();
                anyhow::bail!(
                    "tansu exited at start ({status}); is port {} taken, or is it a build without \
                     the SQLite engine (`scripts/infra.sh kafka` reinstalls it)? Its last lines:\n{}",
                    self.port,
                    last.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = process.start_kill();
                anyhow::bail!("tansu did not listen on port {} within 60 s", self.port);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.process = Some(process);
        Ok(())
    }

    /// Creates `topics` and their `.dlq` topics as the services do at start
    /// ([`shopmesh_events::ensure_topics`]), retrying for up to 60 s while the
    /// broker is coming up.
    pub async fn create_topics(&self, topics: &[&str]) -> anyhow::Result<()> {
        let settings = self.settings();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match shopmesh_events::ensure_topics(&settings, topics).await {
                Ok(()) => return Ok(()),
                Err(err) if tokio::time::Instant::now() >= deadline => return Err(err.into()),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.start_kill();
        }
        // The killed broker may still hold the files open: harmless on Linux.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
