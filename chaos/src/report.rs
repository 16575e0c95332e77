//! `chaos run --report DIR`: one self-contained HTML page per scenario run, drawn from its
//! event log (inline SVG, no script and nothing fetched, so it opens anywhere): the
//! verdict, a timeline with every node's down, paused and cut-off windows and the
//! cluster-wide network faults shaded, leader changes, every vote's latency over time
//! with failures marked, messages per 100 ms, and for runs of up to
//! [`LAMPORT_MAX`] messages a Lamport diagram of who sent what to whom.

use crate::runner::{ScenarioResult, Verdict};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// Most deliveries a Lamport diagram draws (beyond, it is left out: unreadable anyway).
pub const LAMPORT_MAX: usize = 400;
const WIDTH: f64 = 1000.0;
const LEFT: f64 = 110.0;

/// One event: virtual (or wall) milliseconds, and the rest of the line.
fn parse(line: &str) -> Option<(f64, &str)> {
    let line = line.trim_start();
    let (t, rest) = line.split_once("ms ")?;
    Some((t.parse().ok()?, rest))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A window on one node's row (or the cluster's, `None`), from `t0` to `t1`.
struct Window {
    node: Option<String>,
    what: String,
    t0: f64,
    t1: f64,
}

struct Parsed {
    end: f64,
    nodes: BTreeSet<String>,
    windows: Vec<Window>,
    leaders: Vec<(f64, String)>,
    votes: Vec<(f64, f64, bool, String)>,
    delivers: Vec<(f64, String, String, String)>,
    drops: Vec<f64>,
}

fn read(events: &[String]) -> Parsed {
    let mut p = Parsed {
        end: 0.0,
        nodes: BTreeSet::new(),
        windows: Vec::new(),
        leaders: Vec::new(),
        votes: Vec::new(),
        delivers: Vec::new(),
        drops: Vec::new(),
    };
    let mut open: BTreeMap<(Option<String>, String), f64> = BTreeMap::new();
    fn close(
        p: &mut Parsed,
        open: &mut BTreeMap<(Option<String>, String), f64>,
        key: (Option<String>, String),
        t: f64,
    ) {
        if let Some(t0) = open.remove(&key) {
            p.windows.push(Window { node: key.0, what: key.1, t0, t1: t });
        }
    }
    for (t, rest) in events.iter().filter_map(|l| parse(l)) {
        p.end = p.end.max(t);
        let mut words = rest.split_whitespace();
        let (verb, arg) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        match verb {
            "deliver" => {
                if let Some((from, to)) = arg.split_once("->") {
                    let msg = words.next().unwrap_or("").split('(').next().unwrap_or("").to_string();
                    if msg == "Heartbeat"
                        && from.starts_with("proposer")
                        && p.leaders.last().is_none_or(|l| l.1 != from)
                    {
                        p.leaders.push((t, from.to_string()));
                    }
                    for n in [from, to] {
                        if !n.starts_with("client") {
                            p.nodes.insert(n.to_string());
                        }
                    }
                    p.delivers.push((t, from.to_string(), to.to_string(), msg));
                }
            }
            v if v.starts_with("drop-") => p.drops.push(t),
            "down" => {
                open.entry((Some(arg.to_string()), "down".into())).or_insert(t);
            }
            "up" => close(&mut p, &mut open, (Some(arg.to_string()), "down".into()), t),
            "pause" => {
                open.entry((Some(arg.to_string()), "paused".into())).or_insert(t);
            }
            "resume" => close(&mut p, &mut open, (Some(arg.to_string()), "paused".into()), t),
            "fault" if arg == "heal" => {
                let keys: Vec<_> = open.keys().filter(|k| k.1 != "down" && k.1 != "paused").cloned().collect();
                for k in keys {
                    close(&mut p, &mut open, k, t);
                }
            }
            "fault" if arg == "isolate" => {
                let node = words.next().unwrap_or("").to_string();
                open.entry((Some(node), "isolated".into())).or_insert(t);
            }
            "fault" => {
                open.entry((None, arg.to_string())).or_insert(t);
            }
            "vote" => {
                let field = |k: &str| rest.split_whitespace().find_map(|w| w.strip_prefix(k)).unwrap_or("");
                let latency = field("latency_ms=").parse().unwrap_or(0.0);
                let who = rest.split_whitespace().nth(2).unwrap_or("").to_string();
                p.votes.push((t, latency, field("ok=") == "true", format!("{who} {}", field("error="))));
            }
            _ => {}
        }
    }
    let end = p.end;
    for ((node, what), t0) in open {
        p.windows.push(Window { node, what, t0, t1: end });
    }
    // A node that was down or cut off the whole run still has its row.
    let named: Vec<String> = p.windows.iter().filter_map(|w| w.node.clone()).collect();
    p.nodes.extend(named);
    p
}

fn x(t: f64, end: f64) -> f64 {
    LEFT + (WIDTH - LEFT - 10.0) * t / end.max(1.0)
}

fn timeline(p: &Parsed, s: &mut String) {
    let rows: Vec<&String> = p.nodes.iter().collect();
    let h = 24.0 * (rows.len() + 1) as f64 + 20.0;
    let _ = write!(s, r#"<svg id="timeline" width="{WIDTH}" height="{h}" role="img">"#);
    for w in p.windows.iter().filter(|w| w.node.is_none()) {
        let (x0, x1) = (x(w.t0, p.end), x(w.t1, p.end));
        let _ = write!(
            s,
            r#"<rect class="net" x="{x0:.1}" y="0" width="{:.1}" height="{h}"><title>{} {:.0}-{:.0} ms</title></rect>"#,
            (x1 - x0).max(1.0),
            esc(&w.what),
            w.t0,
            w.t1
        );
    }
    for (i, n) in rows.iter().enumerate() {
        let y = 24.0 * i as f64 + 10.0;
        let _ = write!(s, r#"<text x="4" y="{:.1}">{}</text>"#, y + 14.0, esc(n));
        let _ = write!(s, r#"<line x1="{LEFT}" x2="{WIDTH}" y1="{:.1}" y2="{:.1}" class="lane"/>"#, y + 10.0, y + 10.0);
        for w in p.windows.iter().filter(|w| w.node.as_deref() == Some(n.as_str())) {
            let (x0, x1) = (x(w.t0, p.end), x(w.t1, p.end));
            let _ = write!(
                s,
                r#"<rect class="{}" x="{x0:.1}" y="{y:.1}" width="{:.1}" height="20"><title>{} {} {:.0}-{:.0} ms</title></rect>"#,
                esc(&w.what),
                (x1 - x0).max(1.0),
                esc(n),
                esc(&w.what),
                w.t0,
                w.t1
            );
        }
        for (t, l) in p.leaders.iter().filter(|(_, l)| l == *n) {
            let _ = write!(
                s,
                r#"<circle class="leader" cx="{:.1}" cy="{:.1}" r="5"><title>{} leads from {t:.0} ms</title></circle>"#,
                x(*t, p.end),
                y + 10.0,
                esc(l)
            );
        }
    }
    let _ = write!(s, r#"<text x="{LEFT}" y="{:.1}">0 ms</text>"#, h - 4.0);
    let _ =
        write!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{:.0} ms</text></svg>"#, WIDTH - 10.0, h - 4.0, p.end);
}

fn latency(p: &Parsed, s: &mut String) {
    let top = p.votes.iter().map(|v| v.1).fold(1.0, f64::max);
    let h = 160.0;
    let _ = write!(s, r#"<svg id="latency" width="{WIDTH}" height="{h}" role="img">"#);
    let _ = write!(s, r#"<text x="4" y="14">{top:.0} ms</text><text x="4" y="{:.1}">0</text>"#, h - 4.0);
    for (t, ms, ok, who) in &p.votes {
        let y = h - 10.0 - (h - 20.0) * ms / top;
        let class = if *ok { "ok" } else { "failed" };
        let _ = write!(
            s,
            r#"<circle class="{class}" cx="{:.1}" cy="{y:.1}" r="4"><title>{} {ms:.1} ms at {t:.0} ms</title></circle>"#,
            x(*t, p.end),
            esc(who)
        );
    }
    let _ = write!(s, "</svg>");
}

fn rate(p: &Parsed, s: &mut String) {
    let buckets = ((p.end / 100.0).ceil() as usize).max(1);
    let mut sent = vec![0u32; buckets + 1];
    let mut lost = vec![0u32; buckets + 1];
    for d in &p.delivers {
        sent[(d.0 / 100.0) as usize] += 1;
    }
    for t in &p.drops {
        lost[(t / 100.0) as usize] += 1;
    }
    let top = sent.iter().zip(&lost).map(|(a, b)| a + b).max().unwrap_or(1).max(1) as f64;
    let (h, bw) = (120.0, (WIDTH - LEFT - 10.0) / (buckets + 1) as f64);
    let _ = write!(s, r#"<svg id="rate" width="{WIDTH}" height="{h}" role="img">"#);
    let _ = write!(s, r#"<text x="4" y="14">{:.0}/s</text>"#, top * 10.0);
    for i in 0..=buckets {
        let (a, b) = (f64::from(sent[i]) / top * (h - 10.0), f64::from(lost[i]) / top * (h - 10.0));
        let x0 = LEFT + bw * i as f64;
        let _ = write!(
            s,
            r#"<rect class="sent" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{a:.1}"><title>{} delivered, {} dropped at {} ms</title></rect>"#,
            h - a,
            bw.max(1.0),
            sent[i],
            lost[i],
            i * 100
        );
        let _ = write!(
            s,
            r#"<rect class="lost" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{b:.1}"/>"#,
            h - a - b,
            bw.max(1.0)
        );
    }
    let _ = write!(s, "</svg>");
}

fn lamport(p: &Parsed, s: &mut String) {
    let cols: Vec<String> =
        p.delivers.iter().flat_map(|d| [d.1.clone(), d.2.clone()]).collect::<BTreeSet<_>>().into_iter().collect();
    let cx = |n: &str| {
        LEFT + (WIDTH - LEFT - 40.0) * cols.iter().position(|c| c == n).unwrap_or(0) as f64
            / cols.len().max(2).saturating_sub(1) as f64
    };
    let h = 14.0 * p.delivers.len() as f64 + 40.0;
    let _ = write!(s, r#"<svg id="lamport" width="{WIDTH}" height="{h}" role="img">"#);
    for c in &cols {
        let _ = write!(s, r#"<text x="{:.1}" y="12" text-anchor="middle">{}</text>"#, cx(c), esc(c));
        let _ = write!(s, r#"<line class="lane" x1="{:.1}" x2="{:.1}" y1="18" y2="{h}"/>"#, cx(c), cx(c));
    }
    for (i, (t, from, to, msg)) in p.delivers.iter().enumerate() {
        let y = 26.0 + 14.0 * i as f64;
        let _ = write!(
            s,
            r#"<line class="msg" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{y:.1}" marker-end="url(#arrow)"><title>{t:.0} ms {} -&gt; {}: {}</title></line>"#,
            cx(from),
            y - 8.0,
            cx(to),
            esc(from),
            esc(to),
            esc(msg)
        );
        let _ = write!(s, r#"<text class="small" x="4" y="{y:.1}">{t:.0} {}</text>"#, esc(msg));
    }
    let _ = write!(s, "</svg>");
}

const STYLE: &str = "body{font:14px sans-serif;margin:20px;color:#222}h1{font-size:18px}\
svg{display:block;margin:6px 0 18px;background:#fafafa;border:1px solid #ddd}\
text{font-size:11px}.small{font-size:9px;fill:#777}.lane{stroke:#ccc}\
.net{fill:#f6d36b;opacity:.35}.down{fill:#c0392b;opacity:.6}.paused{fill:#8e44ad;opacity:.5}\
.isolated{fill:#e67e22;opacity:.5}.leader{fill:#27ae60}.ok{fill:#2e86c1}.failed{fill:#c0392b}\
.sent{fill:#5d6d7e}.lost{fill:#c0392b}.msg{stroke:#2e86c1;stroke-width:1}\
.pass{color:#1e8449}.fail{color:#c0392b}";

/// The page for one run.
pub fn page(r: &ScenarioResult) -> String {
    let p = read(&r.events);
    let (class, verdict) = match &r.verdict {
        Verdict::Pass => ("pass", "PASS".to_string()),
        Verdict::Fail(m) => ("fail", format!("FAIL: {m}")),
        Verdict::ScriptError(m) => ("fail", format!("ERROR: {m}")),
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(&r.path.display().to_string())
    );
    let _ = write!(
        s,
        "<h1>{} <small>seed {}</small></h1><p id=\"verdict\" class=\"{class}\">{}</p>",
        esc(&r.path.display().to_string()),
        r.seed,
        esc(&verdict)
    );
    let _ = write!(
        s,
        "<p>{} nodes, {} messages delivered, {} dropped, {} votes ({} failed), {} leader changes, {:.0} ms.</p>",
        p.nodes.len(),
        p.delivers.len(),
        p.drops.len(),
        p.votes.len(),
        p.votes.iter().filter(|v| !v.2).count(),
        p.leaders.len(),
        p.end
    );
    s += "<h2>Timeline</h2><p>Rows: nodes; red down, purple paused, orange isolated, yellow bands a cluster-wide network fault (partition, loss, delay, a message rule) until heal; green dots: a proposer starts leading.</p>";
    timeline(&p, &mut s);
    s += "<h2>Vote latency</h2><p>Each vote at the time it finished: blue committed, red failed.</p>";
    latency(&p, &mut s);
    s += "<h2>Messages per 100 ms</h2><p>Grey delivered, red dropped.</p>";
    rate(&p, &mut s);
    if p.delivers.len() <= LAMPORT_MAX {
        s += "<h2>Lamport diagram</h2><p>Every delivery, in order, from sender to receiver.</p>";
        s += r##"<svg width="0" height="0"><defs><marker id="arrow" markerWidth="6" markerHeight="6" refX="6" refY="3" orient="auto"><path d="M0,0 L6,3 L0,6 z" fill="#2e86c1"/></marker></defs></svg>"##;
        lamport(&p, &mut s);
    } else {
        let _ = write!(s, "<p>No Lamport diagram: {} deliveries, over {LAMPORT_MAX}.</p>", p.delivers.len());
    }
    s += "</body></html>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn result(events: &[&str], verdict: Verdict) -> ScenarioResult {
        ScenarioResult {
            path: PathBuf::from("s.rhai"),
            seed: 7,
            verdict,
            virtual_secs: 1.0,
            wall_secs: 0.0,
            events: events.iter().map(|s| s.to_string()).collect(),
            printed: Vec::new(),
            run_dir: None,
        }
    }

    #[test]
    fn the_page_shows_windows_leaders_votes_and_every_small_runs_messages() {
        let r = result(
            &[
                "     0.000ms scenario s.rhai seed 7",
                "    10.000ms deliver proposer-1->acceptor-1 Heartbeat(b=1.1 chosen=0)",
                "    20.000ms fault isolate acceptor-2",
                "    30.000ms down acceptor-3",
                "    40.000ms vote r1 alice->ada ok=false error=timeout slot=0 latency_ms=12.5",
                "    50.000ms drop-partition proposer-1->acceptor-2 Accept(b=1.1 slot=1 n=1)",
                "    60.000ms fault heal",
                "    70.000ms up acceptor-3",
                "    80.000ms deliver acceptor-1->learner-1 Learn(1@1.1)",
            ],
            Verdict::Fail("s.rhai:3: invariant violated: agreement: <slot>".into()),
        );
        let html = page(&r);
        assert!(html.contains(r#"class="isolated" x="#) && html.contains(r#"class="down" x="#), "{html}");
        assert!(html.contains("proposer-1 leads from 10 ms"));
        assert!(html.contains(r#"<circle class="failed""#) && html.contains("alice-&gt;ada timeout 12.5 ms"));
        assert!(html.contains(r#"<svg id="lamport""#) && html.contains("acceptor-1 -&gt; learner-1: Learn"));
        assert!(html.contains("FAIL: s.rhai:3: invariant violated: agreement: &lt;slot&gt;"), "escaped");
        assert!(!html.contains("<script") && !html.contains("http"), "self-contained, nothing fetched");
    }
}
