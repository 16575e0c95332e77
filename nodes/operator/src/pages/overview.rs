//! The HTML overview at `/`: every member's row from `/cluster`, rendered on the server
//! and refreshed in the browser every second; and the HTML escaping the pages share.

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
.up{color:#070}.down{color:#b00;font-weight:bold}.leader{font-weight:bold}";

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
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ballot cluster</title><style>{CSS}</style></head><body>\
<h1>ballot cluster</h1><p>Served by {me}. Refreshes every second (<span id=\"at\">server-rendered</span>). \
<a href=\"/status\">status</a> · <a href=\"/logs\">logs</a> · <a href=\"/metrics\">metrics</a></p>\
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
    document.getElementById("at").textContent="updated "+new Date().toLocaleTimeString();
  }catch(e){document.getElementById("at").textContent="this node does not answer: "+e;}
  finally{clearTimeout(t);}
}
setInterval(refresh,1000);
"#;
