//! A real SMTP server for mail the service sends: tests/smtp_sink.py (aiosmtpd) in a
//! child process, every message it accepts recorded here, parsed.
//!
//! Recipients whose local part starts with `reject` get a permanent refusal (550); those
//! starting with `tempfail` a transient one (451) the first time the address is seen, and
//! are accepted afterwards.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use tokio::sync::{oneshot, Notify};

/// One message as the sink received it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mail {
    pub mail_from: String,
    /// The recipients it accepted: refused ones are not here.
    #[serde(rename = "rcptTos")]
    pub rcpt_to: Vec<String>,
    #[serde(rename = "data")]
    pub raw: String,
    /// In order, RFC 2047 encoded-words decoded, folded lines unfolded.
    pub headers: Vec<(String, String)>,
    /// The text/plain part, its transfer encoding undone, with `\n` line ends.
    pub text: Option<String>,
    /// The text/html part, likewise.
    pub html: Option<String>,
}

impl Mail {
    /// The first header of that name, in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn subject(&self) -> String {
        self.header("subject").unwrap_or_default().to_owned()
    }
}

#[derive(Default)]
struct State {
    mails: Mutex<Vec<Mail>>,
    arrived: Notify,
}

/// The sink's process, killed when dropped.
pub struct SmtpSink {
    port: u16,
    child: Option<Child>,
    state: Arc<State>,
}

/// A port free now. Another process may take it before it is bound: [`SmtpSink::start`]
/// tries again when that happens.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SmtpSink {
    /// On a free port, once it listens.
    pub async fn start() -> Self {
        let mut failures = Vec::new();
        for _ in 0..5 {
            match Self::try_start(free_port()).await {
                Ok(sink) => return sink,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("the SMTP sink did not start: {failures:?}");
    }

    /// On this port, once it listens: to bring a sink back where a service already
    /// looks for one.
    pub async fn start_on(port: u16) -> Self {
        Self::try_start(port)
            .await
            .unwrap_or_else(|failure| panic!("the SMTP sink did not start: {failure}"))
    }

    async fn try_start(port: u16) -> Result<Self, String> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_sink.py");
        // scripts/test names the virtual environment that has aiosmtpd.
        let python = std::env::var("RELAIS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("python does not run (scripts/test installs aiosmtpd): {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        // Owned by the guard at once, so any early return or panic below kills it.
        let sink = SmtpSink {
            port,
            child: Some(child),
            state: Arc::default(),
        };
        let (ready_tx, ready_rx) = oneshot::channel();
        let state = sink.state.clone();
        // A thread, not a task: it outlives the runtime of the test that started it
        // without caring, and reads until the process's end closes the pipe.
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok);
            let ready = lines.next();
            let _ = ready_tx.send(ready.clone());
            if ready.as_deref() != Some("ready") {
                return;
            }
            for line in lines {
                match serde_json::from_str::<Mail>(&line) {
                    Ok(mail) => {
                        state.mails.lock().unwrap().push(mail);
                        state.arrived.notify_waiters();
                    }
                    Err(e) => eprintln!("SMTP sink: unreadable line ({e}): {line}"),
                }
            }
        });
        match tokio::time::timeout(Duration::from_secs(30), ready_rx).await {
            Ok(Ok(Some(line))) if line == "ready" => Ok(sink),
            Ok(Ok(Some(line))) => Err(format!("port {port}: unexpected first line {line:?}")),
            Ok(_) => Err(format!("port {port}: exited before listening")),
            Err(_) => Err(format!("port {port}: not listening after 30s")),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What lettre's `from_url` takes: plain SMTP, no TLS.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Received so far, in order.
    pub fn mails(&self) -> Vec<Mail> {
        self.state.mails.lock().unwrap().clone()
    }

    /// At least `count` messages, failing with those received after `limit`.
    pub async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Mail> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Listening before looking, so a message arriving in between still wakes us.
            let arrived = self.state.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let mails = self.mails();
            if mails.len() >= count {
                return mails;
            }
            let now = tokio::time::Instant::now();
            assert!(
                now < deadline,
                "the SMTP sink got {} of {count} messages within {limit:?}: {mails:#?}",
                mails.len()
            );
            tokio::select! {
                _ = &mut arrived => {}
                _ = tokio::time::sleep(deadline - now) => {}
            }
        }
    }

    /// Kills the process (SIGKILL) and reaps it: the port refuses connections afterwards.
    /// What it received stays readable.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

fn transport(sink: &SmtpSink) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::from_url(&sink.url())
        .unwrap()
        .timeout(Some(Duration::from_secs(10)))
        .build()
}

fn note(to: &str, subject: &str) -> Message {
    Message::builder()
        .from("Relais <relais@example.test>".parse().unwrap())
        .to(to.parse().unwrap())
        .subject(subject)
        .body("plain".to_owned())
        .unwrap()
}

#[tokio::test]
async fn a_multipart_mail_arrives_parsed() {
    let sink = SmtpSink::start().await;
    // Long and non-ASCII, so it goes out as encoded-words folded over lines.
    let subject = "Opération « import nocturne » terminée — 3 étapes sur 3, aucune erreur signalée";
    let text = "Bonjour,\nl'opération est terminée à 100 %.\n";
    let html = "<p>L'opération est <b>terminée</b> à 100&nbsp;%.</p>\n";
    let message = Message::builder()
        .from("Relais <relais@example.test>".parse().unwrap())
        .to("Équipe <ops@example.test>".parse().unwrap())
        .subject(subject)
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Relais-Operation"),
            "op-123 « nuit »".to_owned(),
        ))
        .multipart(
            // One part of each transfer encoding, so both are shown undone.
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .header(ContentTransferEncoding::QuotedPrintable)
                        .body(text.to_owned()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .header(ContentTransferEncoding::Base64)
                        .body(html.to_owned()),
                ),
        )
        .unwrap();
    transport(&sink).send(message).await.unwrap();

    let mails = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.mail_from, "relais@example.test");
    assert_eq!(mail.rcpt_to, ["ops@example.test"]);
    assert_eq!(mail.subject(), subject);
    assert!(
        !mail.raw.contains("Opération"),
        "the subject went out encoded"
    );
    assert_eq!(mail.header("x-relais-operation"), Some("op-123 « nuit »"));
    assert_eq!(mail.header("TO"), Some("Équipe <ops@example.test>"));
    assert_eq!(mail.header("X-Absent"), None);
    assert_eq!(mail.text.as_deref(), Some(text));
    assert_eq!(mail.html.as_deref(), Some(html));
    assert!(mail
        .raw
        .contains("Content-Transfer-Encoding: quoted-printable"));
    assert!(mail.raw.contains("Content-Transfer-Encoding: base64"));
}

#[tokio::test]
async fn reject_recipients_fail_for_good_and_tempfail_ones_once() {
    let sink = SmtpSink::start().await;
    let smtp = transport(&sink);

    let refused = smtp
        .send(note("reject.me@example.test", "refused"))
        .await
        .unwrap_err();
    assert!(refused.is_permanent(), "{refused:?}");
    assert!(
        refused.to_string().contains("mailbox unavailable"),
        "{refused}"
    );

    let deferred = smtp
        .send(note("tempfail.me@example.test", "deferred"))
        .await
        .unwrap_err();
    assert!(deferred.is_transient(), "{deferred:?}");
    smtp.send(note("tempfail.me@example.test", "deferred"))
        .await
        .unwrap();
    // Another address is deferred on its own first try.
    let other = smtp
        .send(note("tempfail.too@example.test", "deferred"))
        .await
        .unwrap_err();
    assert!(other.is_transient(), "{other:?}");

    let mails = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1, "only the retried message was accepted");
    assert_eq!(mails[0].rcpt_to, ["tempfail.me@example.test"]);
}

#[tokio::test]
async fn a_stopped_sink_refuses_connections_until_started_again_on_its_port() {
    let mut sink = SmtpSink::start().await;
    let port = sink.port();
    assert_eq!(sink.url(), format!("smtp://127.0.0.1:{port}"));
    transport(&sink)
        .send(note("a@example.test", "before"))
        .await
        .unwrap();
    sink.wait_for(1, Duration::from_secs(10)).await;

    sink.stop();
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err());
    assert_eq!(sink.mails().len(), 1, "what it received stays readable");
    let down = transport(&sink)
        .send(note("a@example.test", "while down"))
        .await
        .unwrap_err();
    assert!(!down.is_permanent(), "{down:?}");

    let again = SmtpSink::start_on(port).await;
    transport(&again)
        .send(note("a@example.test", "after"))
        .await
        .unwrap();
    let mails = again.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].subject(), "after");
}

#[tokio::test]
#[should_panic(expected = "got 0 of 1 messages")]
async fn waiting_for_mail_that_never_comes_fails_saying_what_came() {
    let sink = SmtpSink::start().await;
    sink.wait_for(1, Duration::from_millis(200)).await;
}
