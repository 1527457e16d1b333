//! A local SMTP server that captures what it is sent: real SMTP over TCP on
//! port 0 (greeting, EHLO/HELO, MAIL, RCPT, DATA with dot-unstuffing, RSET,
//! NOOP, QUIT), each accepted message kept with its envelope and raw data. It
//! can be told to refuse the next N transactions with a 451, as a mail relay
//! that is busy would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Debug)]
pub struct Captured {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// Headers and body as sent, CRLF line ends, dots unstuffed.
    pub data: String,
}

impl Captured {
    /// The value of header `name` (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let (head, _) = self.data.split_once("\r\n\r\n")?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    v.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_owned());
            }
        }
        value
    }

    pub fn body(&self) -> String {
        self.data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.replace("\r\n", "\n"))
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct State {
    messages: Mutex<Vec<Captured>>,
    /// Recipient refused with 451 at RCPT TO, and how many more times.
    refuse: Mutex<Option<(String, usize)>>,
    refused: AtomicUsize,
}

#[derive(Clone)]
pub struct SmtpServer {
    pub port: u16,
    state: Arc<State>,
}

impl SmtpServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let _ = session(stream, &state).await;
                });
            }
        });
        Self { port, state }
    }

    /// `smtp://127.0.0.1:<port>`, for `SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn messages(&self) -> Vec<Captured> {
        self.state.messages.lock().unwrap().clone()
    }

    /// Messages whose envelope recipients include `to`.
    pub fn messages_to(&self, to: &str) -> Vec<Captured> {
        self.messages()
            .into_iter()
            .filter(|m| m.rcpt_to.iter().any(|r| r == to))
            .collect()
    }

    /// Answers the next `n` RCPT TO `address` with 451 (try again later), as
    /// a busy or greylisting relay does.
    pub fn refuse_next(&self, address: &str, n: usize) {
        *self.state.refuse.lock().unwrap() = Some((address.to_owned(), n));
    }

    /// How many times a recipient was refused.
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }
}

fn address(arg: &str) -> String {
    let arg = arg.trim();
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg.find('>').unwrap_or(arg.len());
    arg[start..end].to_owned()
}

async fn session(stream: TcpStream, state: &State) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 capture.test ESMTP ready\r\n").await?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let upper = command.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-capture.test greets you\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if upper.starts_with("HELO") {
            b"250 capture.test\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = Some(address(&command["MAIL FROM:".len()..]));
            to.clear();
            b"250 2.1.0 ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = address(&command["RCPT TO:".len()..]);
            let refuse = {
                let mut refuse = state.refuse.lock().unwrap();
                match refuse.as_mut() {
                    Some((who, left)) if *who == rcpt && *left > 0 => {
                        *left -= 1;
                        true
                    }
                    _ => false,
                }
            };
            if from.is_none() {
                b"503 5.5.1 MAIL first\r\n"
            } else if refuse {
                state.refused.fetch_add(1, Ordering::SeqCst);
                b"451 4.7.1 busy, try again later\r\n"
            } else {
                to.push(rcpt);
                b"250 2.1.5 ok\r\n"
            }
        } else if upper == "DATA" {
            if from.is_none() || to.is_empty() {
                b"503 5.5.1 MAIL and RCPT first\r\n"
            } else {
                write
                    .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    let text = line.trim_end_matches(['\r', '\n']);
                    if text == "." {
                        break;
                    }
                    let text = text
                        .strip_prefix('.')
                        .filter(|_| text.starts_with(".."))
                        .unwrap_or(text);
                    data.push_str(text);
                    data.push_str("\r\n");
                }
                state.messages.lock().unwrap().push(Captured {
                    mail_from: from.take().unwrap_or_default(),
                    rcpt_to: std::mem::take(&mut to),
                    data,
                });
                b"250 2.0.0 queued\r\n"
            }
        } else if upper == "RSET" {
            from = None;
            to.clear();
            b"250 2.0.0 ok\r\n"
        } else if upper.starts_with("NOOP") {
            b"250 2.0.0 ok\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 5.5.2 command not recognized\r\n"
        };
        write.write_all(reply).await?;
    }
}
