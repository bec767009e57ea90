use super::*;
use crate::cspro::csdb::{CsdbFile, CsdbReader};
use crate::cspro::data::{DatReader, ReadOptions};

const POPSTAN_DCF: &str =
    include_str!("../../../fixtures/cspro/jhandley_PopstanCensus_CEN2000.dcf");
const POPSTAN_DAT: &str = include_str!("../../../fixtures/cspro/jhandley_PopstanCensus.dat");
const THREE_LEVEL_DCF: &str =
    include_str!("../../../fixtures/cspro/cspro_ThreeLevelTest_HOUSEHOLD_DICT.dcf");
const TEST_DICT_JSON: &str = include_str!("../../../fixtures/cspro/cspro_TestDict_json.dcf");

fn names(table: &Table) -> Vec<&str> {
    table.columns.iter().map(|c| c.name.as_str()).collect()
}

fn decimal(precision: u8, scale: u8) -> ColumnType {
    ColumnType::Decimal { precision, scale }
}

const CASES_COLUMNS: [&str; 13] = [
    "id",
    "key",
    "label",
    "questionnaire",
    "last_modified_revision",
    "deleted",
    "verified",
    "partial_save_mode",
    "partial_save_field_name",
    "partial_save_level_key",
    "partial_save_record_occurrence",
    "partial_save_item_occurrence",
    "partial_save_subitem_occurrence",
];

#[test]
fn prefixes() {
    assert_eq!(table_prefix("EVAL_DICT"), "eval");
    assert_eq!(table_prefix("KAIROS_DICT"), "kairos");
    assert_eq!(table_prefix("household_dict"), "household");
    assert_eq!(table_prefix("CEN2000"), "cen2000");
    assert_eq!(table_prefix("DICT"), "dict");
    assert_eq!(table_prefix("MY_DICT_2"), "my_dict_2");
}

#[test]
fn case_guids_are_stable_uuid_v5s() {
    let a = case_guid("CEN2000", "010100300110210011", 1);
    assert_eq!(a, case_guid("CEN2000", "010100300110210011", 1));
    let parsed = uuid::Uuid::parse_str(&a).unwrap();
    assert_eq!(parsed.get_version_num(), 5);
    // The same name through the uuid crate's own v5 construction.
    let mut hasher = Sha1::new();
    hasher.update(uuid::Uuid::NAMESPACE_URL.as_bytes());
    hasher.update(b"cspro:CEN2000:010100300110210011");
    assert_eq!(&parsed.as_bytes()[..6], &hasher.finalize()[..6]);
    assert_ne!(a, case_guid("CEN2000", "010100300110210011", 2));
    assert_ne!(a, case_guid("OTHER", "010100300110210011", 1));
}

#[test]
fn popstan_plan_is_csweb_s() {
    let dictionary = Dictionary::parse(POPSTAN_DCF).unwrap();
    let layout = Layout::new(&dictionary).unwrap();
    assert_eq!(layout.prefix, "cen2000");
    assert_eq!(
        layout.table_names().collect::<Vec<_>>(),
        [
            "cen2000_cases",
            "cen2000_level-1",
            "cen2000_person",
            "cen2000_housing",
            "cen2000_interview_record",
            "cen2000_cspro_jobs",
            "cen2000_cspro_meta",
            "cen2000_notes",
        ]
    );

    let cases = layout.cases_table();
    assert_eq!(cases.kind, TableKind::Cases);
    assert_eq!(names(cases), CASES_COLUMNS);
    assert_eq!(cases.primary_key, None);
    assert_eq!(
        cases
            .indexes
            .iter()
            .map(|i| (i.columns.join(","), i.unique))
            .collect::<Vec<_>>(),
        [("id".to_owned(), true), ("deleted".to_owned(), false)]
    );
    let deleted = cases.column("deleted").unwrap();
    assert_eq!(
        (deleted.column_type, deleted.nullable, deleted.default),
        (ColumnType::Integer, false, Some(ColumnDefault::Zero))
    );

    let level = layout.level_table(0);
    assert_eq!(
        names(level),
        [
            "level-1-id",
            "case-id",
            "province",
            "district",
            "village",
            "ea",
            "ur",
            "building",
            "hu",
            "hh"
        ]
    );
    assert_eq!(level.primary_key.as_deref(), Some("level-1-id"));
    assert_eq!(
        level.foreign_keys,
        [ForeignKey {
            column: "case-id".into(),
            table: "cen2000_cases".into(),
            references: "id".into()
        }]
    );
    assert!(level
        .indexes
        .iter()
        .any(|i| i.unique && i.columns == ["case-id"]));
    assert_eq!(level.column("village").unwrap().column_type, decimal(3, 0));

    let person = layout.record_table(0);
    assert_eq!(person.kind, TableKind::Record(0));
    assert_eq!(
        &names(person)[..5],
        ["person-id", "level-1-id", "occ", "line", "p02_rel"]
    );
    assert_eq!(person.columns.len(), 3 + 23);
    assert_eq!(
        person.foreign_keys,
        [ForeignKey {
            column: "level-1-id".into(),
            table: "cen2000_level-1".into(),
            references: "level-1-id".into()
        }]
    );
    let columns = names(person);
    let parent = columns.iter().position(|c| *c == "p15_occ").unwrap();
    assert_eq!(
        columns[parent + 1],
        "p15a_occ",
        "a subitem follows its parent"
    );

    // Records that occur once have no occ.
    let housing = layout.record_table(1);
    assert_eq!(&names(housing)[..2], ["housing-id", "level-1-id"]);
    assert!(housing.column("occ").is_none());

    let interview = layout.record_table(2);
    let enumerator = interview.column("enumerator").unwrap();
    assert_eq!(
        (enumerator.column_type, enumerator.nullable),
        (ColumnType::Text, true)
    );
    assert_eq!(
        interview.column("interview_date").unwrap().column_type,
        decimal(8, 0)
    );

    assert_eq!(
        names(layout.jobs_table()),
        [
            "id",
            "start_caseid",
            "start_revision",
            "end_caseid",
            "end_revision",
            "cases_to_process",
            "cases_processed",
            "status",
            "created_time",
            "modified_time"
        ]
    );
    assert_eq!(
        names(layout.meta_table()),
        [
            "id",
            "cspro_version",
            "dictionary",
            "source_modified_time",
            "created_time",
            "modified_time"
        ]
    );
    assert_eq!(
        names(layout.notes_table()),
        [
            "case_id",
            "field_name",
            "level_key",
            "record_occurrence",
            "item_occurrence",
            "subitem_occurrence",
            "content",
            "operator_id",
            "modified_time"
        ]
    );
}

#[test]
fn three_level_and_json_plans() {
    let dictionary = Dictionary::parse(THREE_LEVEL_DCF).unwrap();
    let layout = Layout::new(&dictionary).unwrap();
    assert_eq!(
        layout.table_names().collect::<Vec<_>>(),
        [
            "household_cases",
            "household_level-1",
            "household_level-2",
            "household_level-3",
            "household_compound_info_rec",
            "household_housing_unit_rec",
            "household_household_rec",
            "household_person_rec",
            "household_cspro_jobs",
            "household_cspro_meta",
            "household_notes",
        ]
    );
    assert_eq!(
        names(layout.level_table(1)),
        ["level-2-id", "level-1-id", "occ", "housing_unit_number"]
    );
    assert_eq!(
        layout.level_table(2).foreign_keys[0],
        ForeignKey {
            column: "level-2-id".into(),
            table: "household_level-2".into(),
            references: "level-2-id".into()
        }
    );
    let compound = layout.record_table(0);
    assert_eq!(
        names(compound),
        [
            "compound_info_rec-id",
            "level-1-id",
            "latitude",
            "longitude",
            "housing_units(1)",
            "housing_units(2)",
            "housing_units(3)",
            "housing_units(4)",
            "housing_units(5)",
            "num_hus"
        ]
    );
    // 15 characters, one of them the decimal point.
    assert_eq!(
        compound.column("latitude").unwrap().column_type,
        decimal(15, 5)
    );
    assert_eq!(
        layout.level_table(0).column("village").unwrap().column_type,
        ColumnType::Text
    );

    let unit = layout.record_table(1);
    assert_eq!(
        &names(unit)[..3],
        ["housing_unit_rec-id", "level-2-id", "hu01_type"]
    );

    let person = layout.record_table(3);
    let columns = names(person);
    assert_eq!(
        &columns[..4],
        ["person_rec-id", "level-3-id", "occ", "first_name"]
    );
    let tail: Vec<&str> = columns[columns.len() - 12..].to_vec();
    assert_eq!(
        tail,
        [
            "single_parent_of_repeating_subitem",
            "repeating_subitem(1)",
            "repeating_subitem(2)",
            "repeating_subitem(3)",
            "not_repeating_subitem",
            "repeating_parent(1)",
            "repeating_parent(2)",
            "sub_one(1)",
            "sub_one(2)",
            "sub_two(1)",
            "sub_two(2)",
            "p25_more"
        ]
    );

    let json = Dictionary::parse(TEST_DICT_JSON).unwrap();
    let layout = Layout::new(&json).unwrap();
    assert_eq!(
        &layout.table_names().collect::<Vec<_>>()[..3],
        [
            "testdict_cases",
            "testdict_level-1",
            "testdict_testdict_rec"
        ]
    );
    // The image item has no column.
    assert_eq!(
        names(layout.record_table(0)),
        ["testdict_rec-id", "level-1-id", "occ", "test_item"]
    );
}

fn guided(mut cases: Vec<Case>) -> Vec<Case> {
    for case in &mut cases {
        case.uuid = Some(case_guid("CEN2000", &case.key, 1));
    }
    cases
}

#[test]
fn popstan_rows() {
    let dictionary = Dictionary::parse(POPSTAN_DCF).unwrap();
    let layout = Layout::new(&dictionary).unwrap();
    let cases: Vec<Case> = guided(
        DatReader::new(&dictionary, POPSTAN_DAT, ReadOptions::default())
            .collect::<Result<_, _>>()
            .unwrap(),
    );

    let taken = layout.ids_taken(&cases);
    assert_eq!(taken, [0, 294, 1262, 240, 294, 0, 0, 0]);
    let mut next = vec![1; layout.tables.len()];
    next[1] = 101;
    let rows = layout.chunk_rows(&cases, &mut next);
    let counts: Vec<usize> = rows.iter().map(Vec::len).collect();
    assert_eq!(counts, [294, 294, 1262, 240, 294, 0, 0, 0]);
    assert_eq!(next[1], 101 + 294);
    for (table, rows) in layout.tables.iter().zip(&rows) {
        for row in rows {
            assert_eq!(row.cells().count(), table.columns.len());
        }
    }

    let first = &cases[0];
    let case_row: Vec<Cell> = rows[0][0].cells().collect();
    let guid = first.uuid.as_deref().unwrap();
    assert_eq!(
        &case_row[..7],
        [
            Cell::Text(guid),
            Cell::Text("010100300110210011"),
            Cell::Text("010100300110210011"),
            Cell::Null,
            Cell::Null,
            Cell::Integer(0),
            Cell::Integer(0),
        ]
    );
    let num = |n: i64| Cell::Number(Number::new(n, 0));
    let level: Vec<Cell> = rows[1][0].cells().collect();
    assert_eq!(
        level,
        [
            Cell::Integer(101),
            Cell::Text(guid),
            num(1),
            num(1),
            num(3),
            num(1),
            num(1),
            num(21),
            num(1),
            num(1)
        ]
    );
    let interview = layout.record_table(2);
    let cells: Vec<Cell> = rows[4][0].cells().collect();
    let at = |name: &str| {
        cells[interview
            .columns
            .iter()
            .position(|c| c.name == name)
            .unwrap()]
    };
    assert_eq!(at("interview_record-id"), Cell::Integer(1));
    assert_eq!(at("level-1-id"), Cell::Integer(101));
    assert_eq!(at("enumerator"), Cell::Text("Lisa"));
    assert_eq!(at("interview_month"), num(12));

    // The first case's three persons: occ 1…3 within the case, all pointing at its node.
    let persons: Vec<Vec<Cell>> = rows[2][..4]
        .iter()
        .map(|r| r.cells().take(3).collect())
        .collect();
    assert_eq!(
        persons,
        [
            [Cell::Integer(1), Cell::Integer(101), Cell::Integer(1)],
            [Cell::Integer(2), Cell::Integer(101), Cell::Integer(2)],
            [Cell::Integer(3), Cell::Integer(101), Cell::Integer(3)],
            [Cell::Integer(4), Cell::Integer(102), Cell::Integer(1)],
        ]
    );
}

#[tokio::test]
async fn three_level_rows_from_csdb() {
    let dictionary = Dictionary::parse(THREE_LEVEL_DCF).unwrap();
    let layout = Layout::new(&dictionary).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/cspro/cspro_ThreeLevelTest.csdb");
    let file = CsdbFile::open(&path, 1 << 20).await.unwrap();
    let mut reader = CsdbReader::new(file, &dictionary, ReadOptions::default());
    let cases = reader.next_chunk(100).await.unwrap();
    let mut next = vec![1; layout.tables.len()];
    let rows = layout.chunk_rows(&cases, &mut next);

    let case_cells: Vec<Cell> = rows[0][0].cells().collect();
    assert_eq!(
        case_cells[0],
        Cell::Text("997f1b93-b3c7-468e-ba29-7c9b799a0281")
    );
    // The file's own revision; an empty label reads as the key.
    assert_eq!(case_cells[4], Cell::Integer(3));
    assert_eq!(case_cells[2], Cell::Text("01010010011 1"));
    let level: Vec<Cell> = rows[1][0].cells().collect();
    assert_eq!(level[4], Cell::Text("001"));

    // One node of each deeper level, each pointing at its parent.
    let level2: Vec<Cell> = rows[2][0].cells().collect();
    let num = |n: i64| Cell::Number(Number::new(n, 0));
    assert_eq!(
        level2,
        [Cell::Integer(1), Cell::Integer(1), Cell::Integer(1), num(1)]
    );
    let level3: Vec<Cell> = rows[3][0].cells().collect();
    assert_eq!(
        level3,
        [Cell::Integer(1), Cell::Integer(1), Cell::Integer(1), num(1)]
    );

    let person = layout.record_table(3);
    let cells: Vec<Cell> = rows[7][0].cells().collect();
    let at = |name: &str| cells[person.columns.iter().position(|c| c.name == name).unwrap()];
    assert_eq!(
        [at("person_rec-id"), at("level-3-id"), at("occ")],
        [Cell::Integer(1), Cell::Integer(1), Cell::Integer(1)]
    );
    assert_eq!(at("first_name"), Cell::Text("newdude"));
    assert_eq!(at("repeating_subitem(2)"), num(2));
    // DEFAULT has no decimal value: NULL.
    assert_eq!(at("repeating_subitem(3)"), Cell::Null);
    assert_eq!(at("repeating_parent(2)"), Cell::Text("2"));

    let compound = layout.record_table(0);
    let cells: Vec<Cell> = rows[4][0].cells().collect();
    let longitude = cells[compound
        .columns
        .iter()
        .position(|c| c.name == "longitude")
        .unwrap()];
    match longitude {
        Cell::Number(n) => assert_eq!(n.to_string(), "234234.56700"),
        other => panic!("{other:?}"),
    }
}

/// Two households under one housing unit, then a second unit: nodes are numbered in
/// order, and `occ` counts a node among its parent's children.
#[test]
fn deeper_nodes_point_at_their_parents() {
    let dictionary = Dictionary::parse(THREE_LEVEL_DCF).unwrap();
    let layout = Layout::new(&dictionary).unwrap();
    let record = |record: usize, path: Vec<u32>| RecordRow {
        record,
        line: None,
        node: *path.last().unwrap(),
        level_ids: vec![Value::Null; path.len()],
        path,
        occurrence: 1,
        values: Vec::new(),
    };
    let case = Case {
        number: 1,
        key: "k".into(),
        uuid: Some("g".into()),
        first_line: None,
        ids: Vec::new(),
        // housing unit 1 with households 1 and 2; housing unit 2 with household 3.
        records: vec![
            record(1, vec![1]),
            record(2, vec![1, 1]),
            record(2, vec![1, 2]),
            record(1, vec![2]),
            record(3, vec![2, 3]),
        ],
        issues: Vec::new(),
        meta: Default::default(),
        notes: Vec::new(),
    };
    let mut next = vec![1; layout.tables.len()];
    let rows = layout.chunk_rows(std::slice::from_ref(&case), &mut next);
    let head = |table: usize| -> Vec<Vec<Cell>> {
        rows[table]
            .iter()
            .map(|r| r.cells().take(3).collect())
            .collect()
    };
    let i = Cell::Integer;
    assert_eq!(head(2), [[i(1), i(1), i(1)], [i(2), i(1), i(2)]]);
    assert_eq!(
        head(3),
        [[i(1), i(1), i(1)], [i(2), i(1), i(2)], [i(3), i(2), i(1)]]
    );
    // The person of household 3 points at it.
    assert_eq!(&head(7)[0][..2], [i(1), i(3)]);
}

#[test]
fn names_that_cannot_be_tables_are_refused() {
    let dictionary = |name: &str, record: &str, items: &str| {
        Dictionary::parse(&format!(
            "[Dictionary]\nName={name}\nRecordTypeStart=1\nRecordTypeLen=1\n\
             [Level]\nName=L\n[IdItems]\n[Item]\nName=ID\nStart=2\nLen=1\n\
             [Record]\nName={record}\nRecordTypeValue='A'\nMaxRecords=3\n{items}"
        ))
        .unwrap()
    };
    let item = |name: &str, start: usize, extra: &str| {
        format!("[Item]\nName={name}\nStart={start}\nLen=1\n{extra}")
    };

    let ok = dictionary("EVAL_DICT", "PRODUCTEURS", &item("X", 3, ""));
    assert_eq!(
        &Layout::new(&ok).unwrap().table_names().collect::<Vec<_>>()[..3],
        ["eval_cases", "eval_level-1", "eval_producteurs"]
    );

    for taken in ["CASES", "NOTES", "CSPRO_JOBS"] {
        let clash = dictionary("EVAL_DICT", taken, &item("X", 3, ""));
        assert_eq!(
            Layout::new(&clash),
            Err(LayoutError::DuplicateTable {
                table: format!("eval_{}", taken.to_ascii_lowercase())
            })
        );
    }

    let occ = dictionary("EVAL_DICT", "R", &item("OCC", 3, ""));
    assert_eq!(
        Layout::new(&occ),
        Err(LayoutError::DuplicateColumn {
            table: "eval_r".into(),
            column: "occ".into()
        })
    );

    let long = "R".repeat(60);
    let too_long = dictionary("EVAL_DICT", &long, &item("X", 3, ""));
    assert!(matches!(
        Layout::new(&too_long),
        Err(LayoutError::NameTooLong { .. })
    ));

    let odd = dictionary("EVAL-DICT", "R", &item("X", 3, ""));
    assert_eq!(
        Layout::new(&odd),
        Err(LayoutError::InvalidName {
            name: "eval-dict".into()
        })
    );
}
