//! The HTML overview at `/`: the tally as bars, the slots committed per second (a
//! sparkline of the last minute, measured in the browser from successive `chosen`
//! values), and every member's row from `/cluster`, rendered on the server and refreshed
//! every second; and the HTML escaping the pages share.

use super::cluster::{cluster_view, ClusterRow};
use super::Shared;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use std::collections::BTreeMap;

/// Escape text for HTML (element content and quoted attributes).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) const CSS: &str = "body{font:14px system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}\
.logs td:last-child{font-family:monospace;white-space:pre-wrap}.WARN{background:#fff6d5}.ERROR{background:#fdd}\
.up{color:#070}.down{color:#b00;font-weight:bold}.leader{font-weight:bold}.bars{margin:.5em 0 1em}.bar{display:flex;align-items:center;margin:2px 0}.bar span{width:8em}.bar i{display:inline-block;height:14px;background:#2e86c1;margin-right:6px}#rate svg{background:#fafafa;border:1px solid #ddd}";

/// The tally as bars, from the learner that applied the most (the freshest count): one row
/// per candidate, its width its share of the leading candidate's votes.
fn tally_bars(rows: &[ClusterRow]) -> String {
    let best = rows.iter().filter(|r| r.tally.is_some()).max_by_key(|r| r.applied.unwrap_or(0));
    let Some(t) = best.and_then(|r| r.tally.as_ref()) else {
        return "<p>No learner answers: no tally to show.</p>".into();
    };
    let top = t.values().copied().max().unwrap_or(0).max(1);
    t.iter()
        .map(|(k, v)| {
            let w = 300 * v / top;
            format!("<div class=\"bar\"><span>{}</span><i style=\"width:{w}px\"></i>{v}</div>", escape(k))
        })
        .collect()
}

/// A cell of the overview: `-` for nothing, a tally as `name: votes, ...`.
fn cell<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn tally_cell(t: Option<&BTreeMap<String, u64>>) -> String {
    t.map_or_else(|| "-".to_string(), |t| t.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "))
}

fn row(r: &ClusterRow) -> String {
    let up = if r.up { "up" } else { "down" };
    format!(
        "<tr><td>{}</td><td>{}</td><td class=\"{up}\">{up}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        escape(&r.node),
        escape(&r.role),
        escape(&cell(r.ballot.as_ref())),
        escape(&cell(r.leader.as_ref())),
        escape(&cell(r.chosen)),
        escape(&cell(r.applied)),
        escape(&tally_cell(r.tally.as_ref())),
        escape(&cell(r.error.as_ref())),
    )
}

pub(super) async fn overview(State(s): State<Shared>) -> Response {
    let c = cluster_view(&s).await;
    let me = s.nodes.iter().map(|n| n.id.to_string()).collect::<Vec<_>>().join(", ");
    let rows: String = c.nodes.iter().map(row).collect();
    let bars = tally_bars(&c.nodes);
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ballot cluster</title><style>{CSS}</style></head><body>\
<h1>ballot cluster</h1><p>Served by {me}. Refreshes every second (<span id=\"at\">server-rendered</span>). \
<a href=\"/status\">status</a> · <a href=\"/logs\">logs</a> · <a href=\"/metrics\">metrics</a></p>\
<h2>Tally</h2><div id=\"tally\" class=\"bars\">{bars}</div>\
<h2>Commits per second</h2><div id=\"rate\"><p id=\"rate-now\">measured from the next refresh on</p>\
<svg id=\"spark\" width=\"300\" height=\"40\"></svg></div>\
<table><thead><tr><th>node</th><th>role</th><th>state</th><th>ballot</th><th>leader</th><th>chosen</th><th>applied</th>\
<th>tally</th><th>note</th></tr></thead><tbody id=\"rows\">{rows}</tbody></table>\
<script>{JS}</script></body></html>",
        me = escape(&me),
    );
    Html(page).into_response()
}

/// Refreshes the overview table from `/cluster` every second; text only (no HTML from
/// the data), each fetch aborted after 900 ms.
const JS: &str = r#"
function show(v){if(v===null||v===undefined)return "-";if(typeof v==="object")return Object.entries(v).map(([k,x])=>k+": "+x).join(", ");return String(v);}
async function refresh(){
  const ctl=new AbortController();const t=setTimeout(()=>ctl.abort(),900);
  try{
    const r=await fetch("/cluster",{signal:ctl.signal,cache:"no-store"});const c=await r.json();
    const body=document.getElementById("rows");const rows=[];
    for(const n of c.nodes){
      const tr=document.createElement("tr");
      const cells=[n.node,n.role,n.up?"up":"down",n.ballot,n.leader,n.chosen,n.applied,n.tally,n.error];
      cells.forEach((v,i)=>{const td=document.createElement("td");td.textContent=show(v);
        if(i===2)td.className=n.up?"up":"down";if(i===0&&n.is_leader)td.className="leader";tr.appendChild(td);});
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    bars(c.nodes);rate(c.nodes);
    document.getElementById("at").textContent="updated "+new Date().toLocaleTimeString();
  }catch(e){document.getElementById("at").textContent="this node does not answer: "+e;}
  finally{clearTimeout(t);}
}
function bars(nodes){
  let best=null;for(const n of nodes){if(n.tally&&(!best||(n.applied||0)>(best.applied||0)))best=n;}
  if(!best)return;const top=Math.max(1,...Object.values(best.tally));const div=document.getElementById("tally");const out=[];
  for(const [k,v] of Object.entries(best.tally)){const row=document.createElement("div");row.className="bar";
    const name=document.createElement("span");name.textContent=k;const bar=document.createElement("i");
    bar.style.width=Math.round(300*v/top)+"px";row.append(name,bar,document.createTextNode(String(v)));out.push(row);}
  div.replaceChildren(...out);
}
const seen=[];
function rate(nodes){
  const chosen=Math.max(0,...nodes.map(n=>n.chosen||0));const now=performance.now();seen.push([now,chosen]);
  while(seen.length>61)seen.shift();if(seen.length<2)return;
  const per=[];for(let i=1;i<seen.length;i++)per.push(Math.max(0,(seen[i][1]-seen[i-1][1])*1000/(seen[i][0]-seen[i-1][0])));
  document.getElementById("rate-now").textContent=Math.round(per[per.length-1])+" slots committed per second (last "+per.length+" s below)";
  const top=Math.max(1,...per);const pts=per.map((v,i)=>(i*5)+","+(38-36*v/top).toFixed(1)).join(" ");
  const svg=document.getElementById("spark");const line=document.createElementNS("http://www.w3.org/2000/svg","polyline");
  line.setAttribute("points",pts);line.setAttribute("fill","none");line.setAttribute("stroke","steelblue");svg.replaceChildren(line);
}
setInterval(refresh,1000);
"#;
