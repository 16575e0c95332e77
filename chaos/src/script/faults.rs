//! The fault verbs of a scenario: network faults, message rules and clock rates.

use super::{ms, step, usage, ClusterRef, Res};
use super::{throw, StopKind};
use crate::cluster::{DiskFault, UsageError};
use ballot_transports::{MessageRule, RuleAction};
use rhai::{Array, Engine, Map};

/// Network faults: `isolate`, `partition`, `partition_oneway`, `heal`, `drop_rate`,
/// `duplicate_rate`, `delay`, the protocol-aware `drop_messages`, `delay_messages`, and
/// `clock_rate`. Rates and delays are checked by the cluster
/// ([`crate::cluster::Fault::new`]), the one place fault commands are validated.
pub(super) fn register_fault_verbs(engine: &mut Engine) {
    engine.register_fn("isolate", |c: &mut ClusterRef, node: &str| -> Res<()> {
        let _step = step(&c.ctx, "isolate", || node.to_string());
        let id = c.node(node)?;
        c.block_on(c.cluster.isolate(id));
        Ok(())
    });
    engine.register_fn("partition", |c: &mut ClusterRef, a: Array, b: Array| -> Res<()> {
        let _step = step(&c.ctx, "partition", || format!("{a:?} | {b:?}"));
        let a = c.nodes_of(&a, "partition")?;
        let b = c.nodes_of(&b, "partition")?;
        c.block_on(c.cluster.partition(&a, &b));
        Ok(())
    });
    engine.register_fn("partition_oneway", |c: &mut ClusterRef, from: Array, to: Array| -> Res<()> {
        let _step = step(&c.ctx, "partition_oneway", || format!("{from:?} -> {to:?}"));
        let from = c.nodes_of(&from, "partition_oneway")?;
        let to = c.nodes_of(&to, "partition_oneway")?;
        c.block_on(c.cluster.partition_oneway(&from, &to));
        Ok(())
    });
    engine.register_fn("heal", |c: &mut ClusterRef| {
        let _step = step(&c.ctx, "heal", String::new);
        c.block_on(c.cluster.heal())
    });
    engine.register_fn("drop_rate", |c: &mut ClusterRef, p: f64| -> Res<()> {
        let _step = step(&c.ctx, "drop_rate", || p.to_string());
        c.block_on(c.cluster.drop_rate(p)).or_else(|e| usage(&c.ctx, e))
    });
    engine.register_fn("drop_rate", |c: &mut ClusterRef, p: i64| -> Res<()> {
        let _step = step(&c.ctx, "drop_rate", || p.to_string());
        c.block_on(c.cluster.drop_rate(p as f64)).or_else(|e| usage(&c.ctx, e))
    });
    engine.register_fn("duplicate_rate", |c: &mut ClusterRef, p: f64| -> Res<()> {
        let _step = step(&c.ctx, "duplicate_rate", || p.to_string());
        c.block_on(c.cluster.duplicate_rate(p)).or_else(|e| usage(&c.ctx, e))
    });
    engine.register_fn("drop_messages", |c: &mut ClusterRef, m: Map| -> Res<()> {
        let _step = step(&c.ctx, "drop_messages", || format!("{m:?}"));
        let rule = message_rule(c, &m, false)?;
        c.block_on(c.cluster.message_rule(rule)).or_else(|e| usage(&c.ctx, e))
    });
    engine.register_fn("delay_messages", |c: &mut ClusterRef, m: Map| -> Res<()> {
        let _step = step(&c.ctx, "delay_messages", || format!("{m:?}"));
        let rule = message_rule(c, &m, true)?;
        c.block_on(c.cluster.message_rule(rule)).or_else(|e| usage(&c.ctx, e))
    });
    fn clock_rate(c: &mut ClusterRef, node: &str, factor: f64) -> Res<()> {
        let _step = step(&c.ctx, "clock_rate", || format!("{node} {factor}"));
        let id = c.node(node)?;
        c.block_on(c.cluster.clock_rate(id, factor)).or_else(|e| usage(&c.ctx, e))
    }
    engine.register_fn("clock_rate", clock_rate);
    engine.register_fn("clock_rate", |c: &mut ClusterRef, node: &str, f: i64| clock_rate(c, node, f as f64));
    engine.register_fn("restart", |c: &mut ClusterRef, node: &str, m: Map| -> Res<String> {
        let _step = step(&c.ctx, "restart", || format!("{node} {m:?}"));
        let id = c.node(node)?;
        let (fault, rejoin) = disk_options(c, &m)?;
        c.block_on(c.cluster.restart_with_disk(id, fault, rejoin))
            .or_else(|e| throw(&c.ctx, StopKind::Failure, format!("restart {node}: {e}")))
    });
    engine.register_fn("delay", |c: &mut ClusterRef, min: i64, max: i64| -> Res<()> {
        let _step = step(&c.ctx, "delay", || format!("{min}..{max}ms"));
        let (min, max) = (ms(&c.ctx, min, "delay")?, ms(&c.ctx, max, "delay")?);
        c.block_on(c.cluster.delay(min.as_millis() as u64, max.as_millis() as u64)).or_else(|e| usage(&c.ctx, e))
    });
}

/// The rule of `c.drop_messages(#{type, from, to, slot, count})` (`delay: None`) or
/// `c.delay_messages(#{type, from, to, slot, ms})` (`delay: Some`): every key optional
/// but `ms`, names checked against the cluster, kinds and counts by [`Fault::new`].
///
/// [`Fault::new`]: crate::cluster::Fault::new
fn message_rule(c: &ClusterRef, m: &Map, delay: bool) -> Res<MessageRule> {
    let verb = if delay { "delay_messages" } else { "drop_messages" };
    let mut rule =
        MessageRule { kind: None, from: None, to: None, slot: None, action: RuleAction::Drop { count: None } };
    let (mut count, mut extra) = (None, None);
    for (k, val) in m {
        let bad = |want: &str| {
            let e = UsageError(format!("{verb}: '{k}' takes {want}, found a {}", val.type_name()));
            usage::<()>(&c.ctx, e).unwrap_err()
        };
        let int = |what: &str| -> Res<u64> {
            match val.as_int() {
                Ok(n) if n >= 0 => Ok(n as u64),
                Ok(n) => usage(&c.ctx, UsageError(format!("{verb}: '{what}' must not be negative, got {n}"))),
                Err(_) => Err(bad("an integer")),
            }
        };
        let name = || val.clone().into_immutable_string();
        match (k.as_str(), delay) {
            ("type", _) => match name() {
                Ok(s) => rule.kind = Some(s.to_string()),
                Err(_) => return Err(bad("a message type")),
            },
            ("from", _) => match name() {
                Ok(s) => rule.from = Some(c.node(&s)?),
                Err(_) => return Err(bad("a node name")),
            },
            ("to", _) => match name() {
                Ok(s) => rule.to = Some(c.node(&s)?),
                Err(_) => return Err(bad("a node name")),
            },
            ("slot", _) => rule.slot = Some(int("slot")?),
            ("count", false) => count = Some(int("count")?),
            ("ms", true) => extra = Some(int("ms")?),
            (other, _) => {
                let keys = if delay { "type, from, to, slot, ms" } else { "type, from, to, slot, count" };
                return usage(&c.ctx, UsageError(format!("{verb}: unknown key '{other}': use {keys}")));
            }
        }
    }
    rule.action = match (delay, extra) {
        (false, _) => RuleAction::Drop { count },
        (true, Some(ms)) => RuleAction::Delay { ms },
        (true, None) => return usage(&c.ctx, UsageError(format!("{verb} needs ms: how much later to deliver"))),
    };
    Ok(rule)
}

/// The options of `c.restart(node, #{disk, rejoin})`: `disk` names the fault, `rejoin`
/// (true unless given) starts a wiped acceptor or proposer rejoining.
fn disk_options(c: &ClusterRef, m: &Map) -> Res<(DiskFault, bool)> {
    let (mut fault, mut rejoin) = (None, true);
    for (k, val) in m {
        match k.as_str() {
            "disk" => match val.clone().into_immutable_string() {
                Ok(s) => {
                    fault = Some(DiskFault::parse(&s).or_else(|e| usage(&c.ctx, UsageError(format!("restart: {e}"))))?)
                }
                Err(_) => {
                    return usage(
                        &c.ctx,
                        UsageError(format!("restart: 'disk' takes a name, found a {}", val.type_name())),
                    )
                }
            },
            "rejoin" => match val.as_bool() {
                Ok(b) => rejoin = b,
                Err(_) => {
                    return usage(
                        &c.ctx,
                        UsageError(format!("restart: 'rejoin' takes true or false, found a {}", val.type_name())),
                    )
                }
            },
            other => return usage(&c.ctx, UsageError(format!("restart: unknown key '{other}': use disk, rejoin"))),
        }
    }
    match fault {
        Some(f) => Ok((f, rejoin)),
        None => {
            usage(&c.ctx, UsageError(format!("restart: the map needs disk: one of {}", DiskFault::NAMES.join(", "))))
        }
    }
}
