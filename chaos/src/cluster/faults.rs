//! Network faults: the one validation of fault commands ([`Fault::new`]) and the fault
//! verbs of a cluster. Both backends take only a [`Fault`], so a command reaches the
//! in-memory network or a node's control channel only once it has been checked here.

use super::{Backend, Cluster, UsageError};
use ballot_core::NodeId;
use ballot_operator::control::FaultCommand;
use ballot_transports::MessageRule;

/// A fault command that passed [`Fault::new`]: every rate is a probability from 0.0 to
/// 1.0 and no delay's min exceeds its max. A backend applies it as it is, with no
/// clamping or checking of its own, so every transport sees the same faults for the same
/// script.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault(FaultCommand);

impl Fault {
    /// Checks `cmd`; the error says what the script got wrong, in one line.
    pub fn new(cmd: FaultCommand) -> Result<Fault, UsageError> {
        cmd.validate().map_err(UsageError)?;
        Ok(Fault(cmd))
    }

    /// Removes every fault (always valid).
    pub fn heal() -> Fault {
        Fault(FaultCommand::Heal)
    }

    /// Cuts every link between the two sides, both ways (always valid).
    pub fn partition(a: &[NodeId], b: &[NodeId]) -> Fault {
        Fault(FaultCommand::Partition { a: a.to_vec(), b: b.to_vec() })
    }

    /// Cuts every link from a node of `from` to a node of `to`, one way (always valid).
    pub fn partition_oneway(from: &[NodeId], to: &[NodeId]) -> Fault {
        Fault(FaultCommand::PartitionOneway { from: from.to_vec(), to: to.to_vec() })
    }

    /// Cuts every link of `id` (always valid).
    pub fn isolate(id: NodeId) -> Fault {
        Fault(FaultCommand::Isolate(id))
    }

    /// The checked command.
    pub fn command(&self) -> &FaultCommand {
        &self.0
    }

    /// Whether it removes every fault.
    pub fn is_heal(&self) -> bool {
        self.0 == FaultCommand::Heal
    }
}

impl Cluster {
    /// Applies a checked fault to every node: the one way in for every fault verb.
    pub async fn fault(&self, fault: Fault) {
        *self.faulty.borrow_mut() = !fault.is_heal();
        match &self.backend {
            Backend::Mem(b) => b.fault(&fault),
            Backend::Proc(b) => {
                self.log.record(|| format!("fault {:?}", fault.command()));
                b.fault(&fault).await
            }
        }
    }

    /// Cut every link between the nodes of `a` and those of `b`, both ways.
    pub async fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        self.fault(Fault::partition(a, b)).await
    }

    /// Cut every link from a node of `from` to a node of `to`, one way only.
    pub async fn partition_oneway(&self, from: &[NodeId], to: &[NodeId]) {
        self.fault(Fault::partition_oneway(from, to)).await
    }

    /// Cut every link of `id`.
    pub async fn isolate(&self, id: NodeId) {
        self.fault(Fault::isolate(id)).await
    }

    /// Remove every partition, link fault, message rule and clock rate.
    pub async fn heal(&self) {
        self.fault(Fault::heal()).await;
        let skewed: Vec<NodeId> = std::mem::take(&mut *self.clock_rates.borrow_mut()).into_keys().collect();
        for id in skewed {
            self.set_clock_rate(id, 1.0).await;
        }
    }

    /// Run `id`'s timers `factor` times as fast as the true clock (skew and drift: 2.0
    /// gains, 0.5 loses), until `heal`; an error outside 0.1..=10. On mem it is the node
    /// loop's timers on virtual time; on processes the same, through the control channel.
    pub async fn clock_rate(&self, id: NodeId, factor: f64) -> Result<(), UsageError> {
        ballot_runtime::check_clock_rate(factor).map_err(UsageError)?;
        if factor == 1.0 {
            self.clock_rates.borrow_mut().remove(&id);
        } else {
            self.clock_rates.borrow_mut().insert(id, factor);
        }
        self.set_clock_rate(id, factor).await;
        Ok(())
    }

    /// After a restart or a resume: the node's clock runs at its rate again.
    pub(super) async fn reapply_clock_rate(&self, id: NodeId) {
        let rate = self.clock_rates.borrow().get(&id).copied();
        if let Some(factor) = rate {
            self.set_clock_rate(id, factor).await;
        }
    }

    async fn set_clock_rate(&self, id: NodeId, factor: f64) {
        self.log.record(|| format!("clock_rate {id} {factor}"));
        match &self.backend {
            Backend::Mem(b) => b.set_clock_rate(id, factor),
            Backend::Proc(b) => b.set_clock_rate(id, factor).await,
        }
    }

    /// Drop each message with probability `p`; an error if `p` is not in 0.0..=1.0.
    pub async fn drop_rate(&self, p: f64) -> Result<(), UsageError> {
        self.fault(Fault::new(FaultCommand::DropRate(p))?).await;
        Ok(())
    }

    /// Deliver each message twice with probability `p`; an error if `p` is not in
    /// 0.0..=1.0.
    pub async fn duplicate_rate(&self, p: f64) -> Result<(), UsageError> {
        self.fault(Fault::new(FaultCommand::DuplicateRate(p))?).await;
        Ok(())
    }

    /// Delay each message by a random time from `min_ms` to `max_ms` milliseconds; an
    /// error if `min_ms` exceeds `max_ms`.
    pub async fn delay(&self, min_ms: u64, max_ms: u64) -> Result<(), UsageError> {
        self.fault(Fault::new(FaultCommand::Delay { min_ms, max_ms })?).await;
        Ok(())
    }

    /// Drop or delay the messages `rule` matches, until `heal` (a counted drop rule ends
    /// once spent); an error for an unknown message type or a count of 0. On node
    /// processes each node applies the rule to what it sends, so a count applies per
    /// sending node.
    pub async fn message_rule(&self, rule: MessageRule) -> Result<(), UsageError> {
        self.fault(Fault::new(FaultCommand::Messages(rule))?).await;
        Ok(())
    }

    /// Whether a fault may be in force: a partition or link fault not healed since, a
    /// clock rate, or a paused node.
    pub(super) fn faults_active(&self) -> bool {
        *self.faulty.borrow()
            || !self.clock_rates.borrow().is_empty()
            || self.nodes().into_iter().any(|n| self.is_paused(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_probabilities_and_a_delay_is_a_range() {
        for p in [0.0, 0.5, 1.0] {
            assert!(Fault::new(FaultCommand::DropRate(p)).is_ok());
            assert!(Fault::new(FaultCommand::DuplicateRate(p)).is_ok());
        }
        for p in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            let e = Fault::new(FaultCommand::DropRate(p)).unwrap_err();
            assert!(e.0.starts_with("drop_rate takes a probability from 0.0 to 1.0"), "{e}");
            assert!(Fault::new(FaultCommand::DuplicateRate(p)).is_err());
        }
        assert!(Fault::new(FaultCommand::Delay { min_ms: 5, max_ms: 5 }).is_ok());
        let e = Fault::new(FaultCommand::Delay { min_ms: 6, max_ms: 5 }).unwrap_err();
        assert_eq!(e.0, "delay(6, 5): min must not exceed max");
        assert!(Fault::new(FaultCommand::Heal).unwrap().is_heal());
    }
}
