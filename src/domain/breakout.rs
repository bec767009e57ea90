//! Whose breakout tables are whose. Tables are named from the dictionary's label, as
//! CSWeb names them, so two projects breaking out dictionaries of the same label share
//! names in one analytics database; what each project may see, size, replace or be told of
//! is decided here, from the outputs the projects recorded.

use chrono::{DateTime, Utc};

/// A table another project's breakout recorded as its own, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct OtherClaim {
    pub table: String,
    pub at: DateTime<Utc>,
}

/// The tables of a project's breakout output that are still its own: they exist, and no
/// other project recorded them since (it did when it created them anew, after they were
/// dropped behind Relais's back).
pub fn own_tables(
    recorded: &[String],
    recorded_at: DateTime<Utc>,
    existing: &[String],
    others: &[OtherClaim],
) -> Vec<String> {
    recorded
        .iter()
        .filter(|t| existing.contains(t))
        .filter(|t| !others.iter().any(|o| &o.table == *t && o.at >= recorded_at))
        .cloned()
        .collect()
}

/// Tables in the way of a breakout that are not the project's own, as the project may be
/// told of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InTheWay {
    /// Tables no project's breakout recorded (made outside Relais): named.
    pub named: Vec<String>,
    /// How many another project's breakout recorded: never named nor sized, since that
    /// project may be another tenant's.
    pub others: usize,
}

impl InTheWay {
    pub fn is_empty(&self) -> bool {
        self.named.is_empty() && self.others == 0
    }

    /// What stands in the way of breaking out `dictionary`, in words a project may read.
    pub fn describe(&self, dictionary: &str) -> String {
        let mut parts = Vec::new();
        if !self.named.is_empty() {
            parts.push(format!(
                "tables {} exist and were not created by a breakout of '{dictionary}' in this project",
                self.named.join(", ")
            ));
        }
        if self.others > 0 {
            parts.push(format!(
                "{} of the tables a breakout of '{dictionary}' writes belong to another project's breakout (tables are named from the dictionary's label)",
                self.others
            ));
        }
        format!("{}; they cannot be replaced", parts.join(", and "))
    }
}

pub fn in_the_way(foreign: Vec<String>, others: &[OtherClaim]) -> InTheWay {
    let (claimed, named): (Vec<String>, Vec<String>) = foreign
        .into_iter()
        .partition(|t| others.iter().any(|o| &o.table == t));
    InTheWay {
        named,
        others: claimed.len(),
    }
}

/// The cases a breakout's tables hold that the data it just read no longer has: their
/// rows go, so the tables mirror the data (a case CSPro deleted is still in the data,
/// flagged, and stays).
pub fn gone_cases(stored: Vec<String>, read: &std::collections::HashSet<String>) -> Vec<String> {
    stored.into_iter().filter(|id| !read.contains(id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn claim(table: &str, at: i64) -> OtherClaim {
        OtherClaim {
            table: table.into(),
            at: t(at),
        }
    }

    #[test]
    fn a_table_is_a_projects_own_until_another_project_records_it_later() {
        let recorded = names(&["eval_cases", "eval_people"]);
        let existing = names(&["eval_cases", "eval_people"]);
        assert_eq!(own_tables(&recorded, t(10), &existing, &[]), recorded);
        assert_eq!(
            own_tables(&recorded, t(10), &names(&["eval_cases"]), &[]),
            names(&["eval_cases"]),
            "a table dropped meanwhile is no one's"
        );
        let earlier = [claim("eval_people", 5)];
        assert_eq!(own_tables(&recorded, t(10), &existing, &earlier), recorded);
        let later = [claim("eval_people", 20)];
        assert_eq!(
            own_tables(&recorded, t(10), &existing, &later),
            names(&["eval_cases"])
        );
    }

    #[test]
    fn only_tables_no_project_recorded_are_named() {
        let foreign = names(&["eval_cases", "precious"]);
        let way = in_the_way(foreign, &[claim("eval_cases", 1)]);
        assert_eq!(way.named, names(&["precious"]));
        assert_eq!(way.others, 1);
        assert!(!way.is_empty());
        let said = way.describe("EVAL");
        assert!(
            said.contains("precious") && !said.contains("eval_cases"),
            "{said}"
        );
        assert!(said.contains("1 of the tables"), "{said}");
        assert!(in_the_way(Vec::new(), &[]).is_empty());
    }

    #[test]
    fn cases_the_data_no_longer_has_go() {
        let read: std::collections::HashSet<String> =
            ["a", "c"].iter().map(|s| s.to_string()).collect();
        let stored = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(gone_cases(stored, &read), ["b", "d"]);
        assert!(gone_cases(Vec::new(), &read).is_empty());
    }
}
