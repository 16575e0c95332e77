//! `chaos run --otlp-endpoint` against a third-party OTLP collector: rotel (PyPI's
//! `rotel` package ships its `rotel-agent` binary). A scenario runs on the tcp transport,
//! node processes included, exporting to rotel over OTLP/gRPC; rotel prints every span it
//! receives (its debug log, detailed) to stdout, which goes to a file; once it has shut
//! down, the test reads that file and checks that every node of the cluster reported
//! under its own service name, with the spans of a round.
//!
//! rotel is installed with pip if it is missing. Where neither is possible (no python3, no
//! pip, PyPI unreachable, no wheel for this machine), the test prints one line saying what
//! is missing and passes without checking anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// rotel's start, its shutdown, a small helper command.
const DEADLINE: Duration = Duration::from_secs(30);
/// pip, when it has to download rotel.
const PIP_DEADLINE: Duration = Duration::from_secs(300);
/// The whole scenario (it has its own waits; this only bounds a hung run).
const RUN_DEADLINE: Duration = Duration::from_secs(300);

const SCENARIO: &str = "chaos/tests/fixtures/traced_round.rhai";
const NODES: [&str; 8] =
    ["proposer-1", "proposer-2", "proposer-3", "acceptor-1", "acceptor-2", "acceptor-3", "learner-1", "learner-2"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

/// Kills (and reaps) a child on drop, on every path out of the test.
struct Reaper(Child);

impl Reaper {
    /// Waits for the child to exit within `deadline`; `None` if it is still running.
    fn wait_within(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            if start.elapsed() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command to its end within `deadline`: its stdout, or why it did not succeed.
fn run_within(cmd: &mut Command, deadline: Duration) -> Result<String, String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", cmd.get_program().to_string_lossy()))?;
    let mut child = Reaper(child);
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.0.stdout.take().expect("piped")));
    let err = drain(Box::new(child.0.stderr.take().expect("piped")));
    let status = child.wait_within(deadline).ok_or_else(|| format!("no answer within {deadline:?}"))?;
    let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    if status.success() {
        return Ok(out);
    }
    let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    Err(format!("{status}: {last}"))
}

/// The `rotel-agent` binary of the installed `rotel` package, installing it with pip if
/// need be. `Err`: what is missing, for the skip line.
fn rotel_agent() -> Result<PathBuf, String> {
    let find = || -> Result<PathBuf, String> {
        let dir = run_within(
            Command::new("python3").args(["-c", "import os, rotel; print(os.path.dirname(rotel.__file__))"]),
            DEADLINE,
        )?;
        let bin = Path::new(dir.trim()).join("rotel-agent");
        // It must run here, not just be there (a wheel for another machine).
        run_within(Command::new(&bin).arg("version"), DEADLINE)
            .map_err(|e| format!("{} does not run: {e}", bin.display()))?;
        Ok(bin)
    };
    if let Ok(bin) = find() {
        return Ok(bin);
    }
    let pip = run_within(
        Command::new("python3").args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args([
            "--timeout",
            "20",
            "--retries",
            "2",
            "--pre",
            "rotel",
        ]),
        PIP_DEADLINE,
    );
    match (find(), pip) {
        (Ok(bin), _) => Ok(bin),
        (Err(_), Err(why)) => Err(format!("rotel is missing and `python3 -m pip install --pre rotel` failed ({why})")),
        (Err(why), Ok(_)) => Err(format!("rotel was installed but its rotel-agent binary is not usable ({why})")),
    }
}

/// Two ports that were free a moment ago (rotel listens on both: gRPC, which we use, and
/// HTTP, which it opens anyway).
fn two_ports() -> (SocketAddr, SocketAddr) {
    let p = ballot_transports::free_loopback_ports(2).expect("free ports");
    (p[0], p[1])
}

/// rotel, listening for OTLP on `grpc` and printing every span it receives to `out`.
fn start_rotel(bin: &Path, grpc: SocketAddr, http: SocketAddr, dir: &Path) -> (Reaper, PathBuf) {
    let out = dir.join("rotel.out");
    let mut cmd = Command::new(bin);
    cmd.arg("start")
        .args(["--otlp-grpc-endpoint", &grpc.to_string()])
        .args(["--otlp-http-endpoint", &http.to_string()])
        // Received spans are printed (in full), and exported nowhere else.
        .args(["--debug-log", "traces", "--debug-log-verbosity", "detailed"])
        .args(["--exporter", "blackhole"])
        // Its own log lines as JSON, one a line: told apart from the span dump at a glance.
        .args(["--log-format", "json"])
        .arg("--pid-file")
        .arg(dir.join("rotel.pid"))
        .arg("--log-file")
        .arg(dir.join("rotel.log"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out).expect("rotel's output file"))
        .stderr(File::create(dir.join("rotel.err")).expect("rotel's error file"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ROTEL_") {
            cmd.env_remove(k);
        }
    }
    let mut rotel = Reaper(cmd.spawn().expect("start rotel-agent"));
    // Ready once its gRPC port takes connections (and it is still running: not someone
    // else's port).
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = rotel.0.try_wait() {
            panic!(
                "rotel exited at start ({status}): {}",
                std::fs::read_to_string(dir.join("rotel.err")).unwrap_or_default()
            );
        }
        if TcpStream::connect_timeout(&grpc, Duration::from_secs(1)).is_ok() {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "rotel does not listen on {grpc} within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (rotel, out)
}

/// SIGTERM, then the exit within the deadline: rotel flushes what it holds as it stops.
fn stop(rotel: &mut Reaper) -> ExitStatus {
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    unsafe { libc::kill(rotel.0.id() as libc::pid_t, libc::SIGTERM) };
    rotel.wait_within(DEADLINE).unwrap_or_else(|| panic!("rotel did not stop within {DEADLINE:?} of SIGTERM"))
}

/// One span as rotel's debug log shows it.
#[derive(Debug, Default)]
struct Span {
    service: String,
    name: String,
    attrs: BTreeMap<String, String>,
}

/// Reads rotel's debug dump (the OpenTelemetry collector's "debug exporter" layout):
///
/// ```text
/// ResourceSpans #0
/// Resource attributes:
///      -> service.name: Str(acceptor-1)
/// ScopeSpans #0
/// Span #0
///     Name           : acceptor.accept
/// Attributes:
///      -> node: Str(acceptor-1)
/// Events:
/// SpanEvent #0
/// ```
fn parse(dump: &str) -> Vec<Span> {
    #[derive(PartialEq)]
    enum In {
        Resource,
        Span,
        Other,
    }
    let mut spans: Vec<Span> = Vec::new();
    let mut service = String::new();
    let mut at = In::Other;
    for line in dump.lines() {
        let t = line.trim();
        if t.starts_with("ResourceSpans #") {
            service.clear();
            at = In::Resource;
        } else if t.starts_with("Span #") {
            spans.push(Span { service: service.clone(), ..Span::default() });
            at = In::Span;
        } else if t.starts_with("ScopeSpans #") || t.starts_with("Events:") || t.starts_with("Links:") {
            at = In::Other;
        } else if let Some(name) =
            t.strip_prefix("Name").filter(|_| at == In::Span).and_then(|r| r.trim_start().strip_prefix(':'))
        {
            spans.last_mut().expect("a span").name = name.trim().to_string();
        } else if let Some(kv) = t.strip_prefix("-> ") {
            let Some((k, v)) = kv.split_once(": ") else { continue };
            let v = v.strip_prefix("Str(").and_then(|v| v.strip_suffix(')')).unwrap_or(v).to_string();
            match at {
                In::Resource if k == "service.name" => service = v,
                In::Span => {
                    spans.last_mut().expect("a span").attrs.insert(k.to_string(), v);
                }
                _ => {}
            }
        }
    }
    spans
}

#[test]
#[cfg(unix)]
fn a_traced_scenario_reaches_rotel() {
    let bin = match rotel_agent() {
        Ok(bin) => bin,
        Err(why) => {
            println!("a_traced_scenario_reaches_rotel: skipped: {}", why.replace('\n', " "));
            return;
        }
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("otlp_rotel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (grpc, http) = two_ports();
    let (mut rotel, dump_path) = start_rotel(&bin, grpc, http, &dir);

    let run_out = dir.join("chaos.out");
    let chaos = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(["run", SCENARIO, "--seed", "11", "--transport", "tcp"])
        .args(["--otlp-endpoint", &format!("http://{grpc}")])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_TRACES_SAMPLER_ARG")
        .current_dir(workspace())
        .stdin(Stdio::null())
        .stdout(File::create(&run_out).unwrap())
        .stderr(File::create(dir.join("chaos.err")).unwrap())
        .spawn()
        .expect("start chaos");
    let mut chaos = Reaper(chaos);
    let status = chaos.wait_within(RUN_DEADLINE);
    let out = std::fs::read_to_string(&run_out).unwrap_or_default()
        + &std::fs::read_to_string(dir.join("chaos.err")).unwrap_or_default();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "chaos run ({status:?}):\n{out}");
    assert!(out.contains("chaos: exporting traces to"), "{out}");
    assert!(!out.contains("cannot export spans"), "every export reached rotel:\n{out}");

    // chaos and its nodes flushed before exiting; rotel prints the rest as it stops.
    let stopped = stop(&mut rotel);
    let dump = std::fs::read_to_string(&dump_path).unwrap_or_default();
    let spans = parse(&dump);
    let excerpt = || dump.chars().take(3000).collect::<String>();
    assert!(!spans.is_empty(), "rotel ({stopped}) printed no span:\n{}", excerpt());

    let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    for s in NODES.iter().copied().chain(["chaos", "client-1"]) {
        assert!(services.contains(s), "{s} reported to rotel under its own service name: {services:?}");
    }
    // A span that names its node is exported under that node's service.
    for s in &spans {
        if let Some(node) = s.attrs.get("node") {
            assert_eq!(&s.service, node, "{s:?}");
        }
    }
    let by_name = |name: &str| -> BTreeSet<&str> {
        spans.iter().filter(|s| s.name == name).map(|s| s.service.as_str()).collect()
    };
    let set = |v: &[&'static str]| v.iter().copied().collect::<BTreeSet<&str>>();
    let root = format!("scenario {SCENARIO}");
    assert_eq!(by_name(&root), set(&["chaos"]), "the scenario's root span, from chaos");
    assert!(spans.iter().any(|s| s.name == root && s.attrs.get("verdict").map(String::as_str) == Some("PASS")));
    assert_eq!(by_name("vote"), set(&["client-1"]));
    // The round: the election, each proposer taking a vote, the leader's phase 2, every
    // acceptor accepting, every learner learning and applying.
    assert_eq!(by_name("proposer.request"), set(&NODES[..3]), "every proposer took a traced vote");
    let leaders = by_name("proposer.phase2");
    assert!(!leaders.is_empty() && leaders.iter().all(|l| l.starts_with("proposer-")), "phase 2 led by {leaders:?}");
    assert!(by_name("proposer.phase1").iter().all(|p| p.starts_with("proposer-")));
    assert!(!by_name("proposer.phase1").is_empty(), "the election is a trace of its own");
    assert_eq!(by_name("acceptor.prepare"), set(&NODES[3..6]), "every acceptor answers an election");
    assert_eq!(by_name("acceptor.accept"), set(&NODES[3..6]));
    assert_eq!(by_name("learner.learn"), set(&NODES[6..]));
    assert_eq!(by_name("learner.apply"), set(&NODES[6..]));
    let votes =
        spans.iter().filter(|s| s.name == "vote" && s.attrs.get("voter").is_some_and(|v| v.starts_with("voter-via-")));
    assert_eq!(votes.count(), 3, "the scenario's three votes");

    drop(rotel);
    let _ = std::fs::remove_dir_all(&dir);
}
