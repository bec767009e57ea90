use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-15T10:30:00Z")
        .unwrap()
        .to_utc()
}

fn notebook() -> Notebook {
    let change = NotebookChange {
        name: Some("Daily".into()),
        ..Default::default()
    };
    Notebook::create(
        NotebookId::new(),
        TenantId::new(),
        ProjectId::new(),
        change,
        "ci",
        now(),
    )
    .unwrap()
}

fn block(nb: &Notebook, others: &[Block], order: i32, deps: Vec<BlockId>) -> Block {
    let change = BlockChange {
        block_type: Some("Echo".into()),
        title: Some(format!("b{order}")),
        order: Some(order),
        dependencies: Some(deps),
        ..Default::default()
    };
    Block::create(BlockId::new(), nb.id, change, others, "ci", now()).unwrap()
}

fn deps_of(spec: &BatchSpec, b: &Block) -> Vec<String> {
    spec.members
        .iter()
        .find(|m| m.key == member_key(b.id))
        .unwrap()
        .dependencies
        .clone()
}

#[test]
fn without_dependencies_blocks_run_in_block_order() {
    let nb = notebook();
    let third = block(&nb, &[], 2, vec![]);
    let first = block(&nb, &[], 0, vec![]);
    let second = block(&nb, &[], 1, vec![]);
    let blocks = vec![third.clone(), first.clone(), second.clone()];
    let spec = run_spec(&nb, &blocks).unwrap();
    let keys: Vec<&str> = spec.members.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            member_key(first.id),
            member_key(second.id),
            member_key(third.id)
        ]
    );
    assert!(deps_of(&spec, &first).is_empty());
    assert_eq!(deps_of(&spec, &second), [member_key(first.id)]);
    assert_eq!(deps_of(&spec, &third), [member_key(second.id)]);
    assert_eq!(spec.members[0].spec.operation_type, "Echo");
    assert_eq!(spec.members[0].spec.operation_name, "b0");
}

#[test]
fn a_disabled_block_is_left_out_and_its_dependents_wait_for_what_it_waited_for() {
    let nb = notebook();
    let a = block(&nb, &[], 0, vec![]);
    let mut b = block(&nb, std::slice::from_ref(&a), 1, vec![a.id]);
    let c = block(&nb, &[a.clone(), b.clone()], 2, vec![b.id]);
    b.disabled = true;
    let spec = run_spec(&nb, &[a.clone(), b.clone(), c.clone()]).unwrap();
    assert_eq!(spec.members.len(), 2);
    assert_eq!(deps_of(&spec, &c), [member_key(a.id)]);
    // In block order too, the disabled block is skipped over.
    let mut x = block(&nb, &[], 0, vec![]);
    let y = block(&nb, &[], 1, vec![]);
    let z = block(&nb, &[], 2, vec![]);
    let mut y_off = y.clone();
    y_off.disabled = true;
    let spec = run_spec(&nb, &[x.clone(), y_off, z.clone()]).unwrap();
    assert_eq!(deps_of(&spec, &z), [member_key(x.id)]);
    x.disabled = true;
    let mut y2 = y.clone();
    y2.disabled = true;
    let spec = run_spec(&nb, &[x.clone(), y2, z.clone()]).unwrap();
    assert_eq!(spec.members.len(), 1);
    assert!(deps_of(&spec, &z).is_empty());
    x.disabled = true;
    let mut z2 = z.clone();
    z2.disabled = true;
    let mut y3 = y;
    y3.disabled = true;
    assert!(run_spec(&nb, &[x, y3, z2]).is_none(), "nothing to run");
}

#[test]
fn dependencies_are_blocks_of_the_notebook_listed_once_without_a_cycle() {
    let nb = notebook();
    let a = block(&nb, &[], 0, vec![]);
    let b = block(&nb, std::slice::from_ref(&a), 1, vec![a.id]);
    let others = vec![a.clone(), b.clone()];
    let refused = |deps: Vec<BlockId>, target: &Block| {
        let mut target = target.clone();
        let change = BlockChange {
            dependencies: Some(deps),
            ..Default::default()
        };
        target.apply(change, &others, "ci", now()).unwrap_err()
    };
    let stranger = BlockId::new();
    let e = refused(vec![stranger], &a);
    assert_eq!(e.field, "dependencies[0]");
    assert!(
        e.message.contains("no block of this notebook"),
        "{}",
        e.message
    );
    assert_eq!(refused(vec![a.id], &a).field, "dependencies[0]");
    let twice = refused(vec![a.id, a.id], &b);
    assert_eq!(twice.field, "dependencies[1]");
    let cycle = refused(vec![b.id], &a);
    assert_eq!(cycle.field, "dependencies");
    assert!(cycle.message.contains("cycle"), "{}", cycle.message);
    assert!(
        cycle.message.contains(&a.id.to_string()),
        "{}",
        cycle.message
    );
}

#[test]
fn a_configuration_is_a_json_object_written_as_a_string() {
    assert!(checked_configuration(r#"{"filterType": "dateRange"}"#, "configuration").is_ok());
    for wrong in ["[1]", "\"x\"", "{", "3"] {
        let e = checked_configuration(wrong, "configuration").unwrap_err();
        assert_eq!(e.field, "configuration", "{wrong}");
    }
    assert_eq!(checked_block_order(-1).unwrap_err().field, "blockOrder");
    assert_eq!(
        checked_block_order(1 << 40).unwrap_err().field,
        "blockOrder"
    );
    assert_eq!(checked_block_order(3).unwrap(), 3);
    assert_eq!(
        checked_block_title("a\u{7}b").unwrap_err().field,
        "blockTitle"
    );
    assert!(checked_description("line\nline", "blockDescription").is_ok());
}

#[test]
fn a_schedule_sets_the_next_tick_and_a_pause_clears_it_until_resumed() {
    let mut nb = notebook();
    assert_eq!(nb.next_run_at, None);
    let change = NotebookChange {
        schedule: Some(Some("0 * * * *".into())),
        ..Default::default()
    };
    nb.apply(change, "ci", now()).unwrap();
    let hour = DateTime::parse_from_rfc3339("2024-01-15T11:00:00Z")
        .unwrap()
        .to_utc();
    assert_eq!(nb.next_run_at, Some(hour));
    let pause = NotebookChange {
        schedule_paused: Some(true),
        ..Default::default()
    };
    nb.apply(pause, "ci", now()).unwrap();
    assert_eq!(nb.next_run_at, None);
    assert!(nb.schedule.is_some(), "the schedule is kept");
    let later = hour + chrono::Duration::minutes(90);
    let resume = NotebookChange {
        schedule_paused: Some(false),
        ..Default::default()
    };
    nb.apply(resume, "ci", later).unwrap();
    assert_eq!(
        nb.next_run_at,
        Some(hour + chrono::Duration::hours(2)),
        "ticks due while paused do not run"
    );
    let bad = NotebookChange {
        timezone: Some("Nowhere/Special".into()),
        ..Default::default()
    };
    assert_eq!(nb.apply(bad, "ci", later).unwrap_err().field, "timezone");
    let removed = NotebookChange {
        schedule: Some(None),
        ..Default::default()
    };
    nb.apply(removed, "ci", later).unwrap();
    assert_eq!((nb.schedule.is_none(), nb.next_run_at), (true, None));
}

#[test]
fn statistics_count_ended_runs_and_keep_the_last() {
    let t = now();
    let stats = BlockStats::from_members([
        (OperationStatus::Completed, Some(t)),
        (OperationStatus::Running, None),
        (
            OperationStatus::Failed,
            Some(t + chrono::Duration::seconds(5)),
        ),
        (
            OperationStatus::Skipped,
            Some(t - chrono::Duration::seconds(5)),
        ),
    ]);
    assert_eq!(stats.execution_count, 3);
    assert_eq!(
        stats.last,
        Some((t + chrono::Duration::seconds(5), ExecutionStatus::Failed))
    );
    assert_eq!(BlockStats::from_members([]), BlockStats::default());
}
