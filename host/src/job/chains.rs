//! Operator chaining: which operators run together in one task.
//!
//! As in Flink, an edge is chainable when records could flow over it without leaving the
//! subtask: it is `forward` (so both ends have the same parallelism), it is its upstream's only
//! output and its downstream's only input, and neither the job (`[job] chaining = false`) nor the
//! edge (`chain = false`) turns chaining off. A chain is a maximal path of chainable edges. Its
//! operators keep their ids, their state and their metrics: chaining changes how batches move,
//! never what a checkpoint holds, so a savepoint restores with chaining on or off.

use super::{JobSpec, Partitioning};

/// Operators that run in one task per subtask index, in the order records flow through them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// Operator ids, head first.
    pub operators: Vec<String>,
}

impl Chain {
    /// The first operator: its inputs are the chain's inputs.
    pub fn head(&self) -> &str {
        &self.operators[0]
    }

    /// The last operator: its outputs are the chain's outputs.
    pub fn tail(&self) -> &str {
        &self.operators[self.operators.len() - 1]
    }
}

impl std::fmt::Display for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.operators.join(" -> "))
    }
}

impl JobSpec {
    /// Whether `edges[i]` joins its two operators into one chain.
    pub fn is_chained(&self, i: usize) -> bool {
        let e = &self.edges[i];
        self.job.chaining()
            && e.chain
            && e.partitioning == Partitioning::Forward
            && self.edges.iter().filter(|d| d.from == e.from).count() == 1
            && self.edges.iter().filter(|d| d.to == e.to).count() == 1
    }

    /// The job's chains, in topological order; every operator is in exactly one (an operator
    /// that chains with nothing is a chain of one).
    pub fn chains(&self) -> Vec<Chain> {
        let chained: Vec<usize> = (0..self.edges.len()).filter(|&i| self.is_chained(i)).collect();
        let next = |id: &str| chained.iter().map(|&i| &self.edges[i]).find(|e| e.from == id).map(|e| e.to.clone());
        let order = self.topological_order().expect("a loaded job is acyclic");
        order
            .iter()
            .filter(|id| !chained.iter().any(|&i| &self.edges[i].to == *id))
            .map(|head| {
                let mut operators = vec![head.clone()];
                while let Some(to) = next(operators.last().expect("non-empty")) {
                    operators.push(to);
                }
                Chain { operators }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn job(extra: &str, edges: &str) -> JobSpec {
        let text = format!(
            r#"
[job]
{extra}
[[operators]]
id = "a"
module = "a.wasm"
parallelism = 2
[[operators]]
id = "b"
module = "b.wasm"
parallelism = 2
[[operators]]
id = "c"
module = "c.wasm"
parallelism = 2
[[operators]]
id = "d"
module = "d.wasm"
parallelism = 2
{edges}
"#
        );
        JobSpec::parse(&text, Path::new("job.toml")).unwrap()
    }

    fn chains(j: &JobSpec) -> Vec<String> {
        j.chains().iter().map(Chain::to_string).collect()
    }

    const LINE: &str = r#"
[[edges]]
from = "a"
to = "b"
[[edges]]
from = "b"
to = "c"
[[edges]]
from = "c"
to = "d"
"#;

    #[test]
    fn a_line_of_forward_edges_is_one_chain() {
        assert_eq!(chains(&job("", LINE)), vec!["a -> b -> c -> d"]);
    }

    #[test]
    fn chaining_can_be_turned_off_for_the_job_or_an_edge() {
        assert_eq!(chains(&job("chaining = false", LINE)), vec!["a", "b", "c", "d"]);
        let cut = LINE.replacen("to = \"c\"", "to = \"c\"\nchain = false", 1);
        assert_eq!(chains(&job("", &cut)), vec!["a -> b", "c -> d"]);
    }

    #[test]
    fn only_forward_single_input_single_output_edges_chain() {
        let rebalance = LINE.replacen("to = \"c\"", "to = \"c\"\npartitioning = \"rebalance\"", 1);
        assert_eq!(chains(&job("", &rebalance)), vec!["a -> b", "c -> d"]);
        // a fans out to b and c: neither edge chains; c and b both feed d: neither chains either.
        let diamond = r#"
[[edges]]
from = "a"
to = "b"
[[edges]]
from = "a"
to = "c"
[[edges]]
from = "b"
to = "d"
[[edges]]
from = "c"
to = "d"
"#;
        let mut got = chains(&job("", diamond));
        got.sort();
        assert_eq!(got, vec!["a", "b", "c", "d"]);
    }
}
