//! The CSPro data dictionary (`.dcf`) as one typed model, whichever of its two file forms
//! it came from.
//!
//! Positions are resolved once, here: every item carries its absolute 1-based start, and
//! every record lists its [`Field`]s (one per item occurrence) with their own starts, so the
//! data readers never redo the arithmetic for repeating items or subitems of repeating
//! parents, and the table plan uses the very same list for its columns.
//!
//! CSPro's own defaults are applied where a file leaves a value out (a record is required
//! and occurs once, an item is numeric, occurs once, has no decimals). In the text form the
//! `[Dictionary]` `ZeroFill`/`DecimalChar` settings are only defaults for *new* items in the
//! designer, which writes each item's own setting explicitly, so an item without
//! `DecimalChar=Yes` has no decimal character. The JSON form writes `zeroFill` per item too
//! but leaves `start` out for non-id items when positions are relative; those starts are
//! computed the way CSPro does: record items follow the id area (record type and the id
//! items of every level), each non-subitem advances by `length × occurrences`, and a
//! subitem sits at its parent's start plus `subitemOffset`.

use std::fmt;

use serde::Deserialize;

/// Where in a dictionary file a problem is: a line of the text form, or a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Line(usize),
    Path(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(line) => write!(f, "line {line}"),
            Location::Path(path) if path.is_empty() => f.write_str("top level"),
            Location::Path(path) => f.write_str(path),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DictionaryError {
    #[error("the dictionary file is empty")]
    Empty,
    #[error("{at}: not a CSPro JSON dictionary: {message}")]
    Json { at: Location, message: String },
    #[error("{at}: {what} has no {field}")]
    MissingField {
        at: Location,
        what: String,
        field: &'static str,
    },
    #[error("{at}: {what}: {field}={value:?} is not valid ({expected})")]
    InvalidValue {
        at: Location,
        what: String,
        field: String,
        value: String,
        expected: &'static str,
    },
    #[error("{at}: {what}: {message}")]
    Invalid {
        at: Location,
        what: String,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DictionaryForm {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Numeric,
    Alpha,
    /// Image, audio, document and other binary content: it has no text in a `.dat` line
    /// and no column of its own, so readers and the table plan skip it.
    Binary,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub name: String,
    pub label: String,
    /// Absolute, 1-based.
    pub start: usize,
    pub len: usize,
    pub kind: ItemKind,
    pub decimals: u8,
    /// The decimal character is written in the data; without it decimals are implied.
    pub decimal_char: bool,
    pub zero_fill: bool,
    pub occurrences: u32,
    /// Index, within the same record's `items`, of the item this subitem is part of.
    pub subitem_of: Option<usize>,
}

impl Item {
    pub fn is_subitem(&self) -> bool {
        self.subitem_of.is_some()
    }

    pub fn is_numeric(&self) -> bool {
        self.kind == ItemKind::Numeric
    }
}

/// One value slot of a record: an item, or one occurrence of a repeating item (or of a
/// subitem whose parent repeats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Index into the record's `items`.
    pub item: usize,
    /// 1-based occurrence; `None` when neither the item nor its parent repeats.
    pub occurrence: Option<u32>,
    /// Absolute, 1-based.
    pub start: usize,
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub label: String,
    /// The text found at the record type position of this record's lines (empty when the
    /// dictionary has no record type).
    pub type_value: String,
    /// Index into `Dictionary::levels`.
    pub level: usize,
    pub required: bool,
    pub max_occurrences: u32,
    pub items: Vec<Item>,
    fields: Vec<Field>,
}

impl Record {
    /// The record's value slots in item order, occurrences of one item next to each other.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    pub fn item(&self, field: &Field) -> &Item {
        &self.items[field.item]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    pub name: String,
    pub label: String,
    pub id_items: Vec<Item>,
    /// Indices into `Dictionary::records`.
    pub records: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dictionary {
    pub form: DictionaryForm,
    pub version: String,
    pub name: String,
    pub label: String,
    /// 1-based; 0 together with `record_type_len == 0` when lines carry no record type.
    pub record_type_start: usize,
    pub record_type_len: usize,
    pub relative_positions: bool,
    pub levels: Vec<Level>,
    /// Every record of every level, level by level in file order.
    pub records: Vec<Record>,
}

impl Dictionary {
    /// Reads either form: JSON when the first character after an optional BOM is `{`.
    pub fn parse(text: &str) -> Result<Dictionary, DictionaryError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let body = text.trim_start();
        if body.is_empty() {
            return Err(DictionaryError::Empty);
        }
        let raw = if body.starts_with('{') {
            parse_json(text)?
        } else {
            parse_text(text)?
        };
        raw.build()
    }

    pub fn record_by_name(&self, name: &str) -> Option<(usize, &Record)> {
        self.records
            .iter()
            .enumerate()
            .find(|(_, r)| r.name.eq_ignore_ascii_case(name))
    }
}

// ---------------------------------------------------------------------------------------
// The form-independent intermediate model: both parsers fill it, `build` checks it and
// resolves positions.

struct RawDictionary {
    form: DictionaryForm,
    version: String,
    name: String,
    label: String,
    record_type_start: usize,
    record_type_len: usize,
    relative_positions: bool,
    levels: Vec<RawLevel>,
    at: Location,
}

struct RawLevel {
    name: String,
    label: String,
    id_items: Vec<RawItem>,
    records: Vec<RawRecord>,
    at: Location,
}

struct RawRecord {
    name: String,
    label: String,
    type_value: String,
    required: bool,
    max_occurrences: u32,
    items: Vec<RawItem>,
    at: Location,
}

#[derive(Clone)]
struct RawItem {
    name: String,
    label: String,
    start: Option<usize>,
    subitem_offset: Option<usize>,
    len: usize,
    kind: ItemKind,
    subitem: bool,
    decimals: u8,
    decimal_char: bool,
    zero_fill: bool,
    occurrences: u32,
    at: Location,
}

/// CSPro keeps numeric values in doubles and caps numeric items at 15 characters.
const MAX_NUMERIC_LEN: usize = 15;

impl RawDictionary {
    fn build(self) -> Result<Dictionary, DictionaryError> {
        let what_dict = format!("dictionary {}", self.name);
        if self.name.is_empty() {
            return Err(DictionaryError::MissingField {
                at: self.at.clone(),
                what: "dictionary".into(),
                field: "Name",
            });
        }
        if self.levels.is_empty() {
            return Err(invalid(&self.at, &what_dict, "has no level"));
        }
        if (self.record_type_start == 0) != (self.record_type_len == 0) {
            return Err(invalid(
                &self.at,
                &what_dict,
                "record type start and length must both be 0 or both be positive",
            ));
        }
        let record_count: usize = self.levels.iter().map(|l| l.records.len()).sum();
        if self.record_type_len == 0 && record_count > 1 {
            return Err(invalid(
                &self.at,
                &what_dict,
                "has several records but no record type to tell their lines apart",
            ));
        }

        // The id area every record's items follow when positions are relative.
        let mut id_area_end = self.record_type_start + self.record_type_len.saturating_sub(1);
        for level in &self.levels {
            for item in &level.id_items {
                let start = item.start.ok_or_else(|| DictionaryError::MissingField {
                    at: item.at.clone(),
                    what: format!("id item {}", item.name),
                    field: "Start",
                })?;
                id_area_end = id_area_end.max(start + item.len - 1);
            }
        }

        let mut levels = Vec::with_capacity(self.levels.len());
        let mut records = Vec::with_capacity(record_count);
        for (level_index, raw_level) in self.levels.into_iter().enumerate() {
            if raw_level.id_items.is_empty() {
                return Err(invalid(
                    &raw_level.at,
                    &format!("level {}", raw_level.name),
                    "has no id items",
                ));
            }
            let mut id_items = Vec::with_capacity(raw_level.id_items.len());
            for raw in raw_level.id_items {
                let what = format!("id item {}", raw.name);
                if raw.subitem {
                    return Err(invalid(&raw.at, &what, "id items cannot be subitems"));
                }
                if raw.occurrences != 1 {
                    return Err(invalid(&raw.at, &what, "id items cannot repeat"));
                }
                if raw.kind == ItemKind::Binary {
                    return Err(invalid(&raw.at, &what, "id items cannot be binary"));
                }
                let start = raw.start.unwrap_or_default();
                id_items.push(finish_item(raw, start, None)?);
            }
            let mut level_records = Vec::with_capacity(raw_level.records.len());
            for raw_record in raw_level.records {
                level_records.push(records.len());
                records.push(build_record(
                    raw_record,
                    level_index,
                    self.relative_positions.then_some(id_area_end + 1),
                    self.record_type_len,
                )?);
            }
            levels.push(Level {
                name: raw_level.name,
                label: raw_level.label,
                id_items,
                records: level_records,
            });
        }

        if self.record_type_len > 0 {
            for (i, record) in records.iter().enumerate() {
                if let Some(other) = records[..i]
                    .iter()
                    .find(|r| r.type_value == record.type_value)
                {
                    return Err(invalid(
                        &self.at,
                        &format!("record {}", record.name),
                        &format!(
                            "record type value {:?} is already used by record {}",
                            record.type_value, other.name
                        ),
                    ));
                }
            }
        }

        Ok(Dictionary {
            form: self.form,
            version: self.version,
            name: self.name,
            label: self.label,
            record_type_start: self.record_type_start,
            record_type_len: self.record_type_len,
            relative_positions: self.relative_positions,
            levels,
            records,
        })
    }
}

fn invalid(at: &Location, what: &str, message: &str) -> DictionaryError {
    DictionaryError::Invalid {
        at: at.clone(),
        what: what.to_string(),
        message: message.to_string(),
    }
}

/// `first_start` is where the first item goes when items have no `Start` of their own;
/// `None` (absolute positions) makes a missing `Start` an error.
fn build_record(
    raw: RawRecord,
    level: usize,
    first_start: Option<usize>,
    record_type_len: usize,
) -> Result<Record, DictionaryError> {
    let what = format!("record {}", raw.name);
    if raw.name.is_empty() {
        return Err(DictionaryError::MissingField {
            at: raw.at,
            what: "record".into(),
            field: "Name",
        });
    }
    if record_type_len > 0 && raw.type_value.chars().count() != record_type_len {
        return Err(DictionaryError::InvalidValue {
            at: raw.at,
            what,
            field: "RecordTypeValue".into(),
            value: raw.type_value,
            expected: "as long as the dictionary's record type",
        });
    }
    if raw.max_occurrences == 0 {
        return Err(DictionaryError::InvalidValue {
            at: raw.at,
            what,
            field: "MaxRecords".into(),
            value: "0".into(),
            expected: "at least 1",
        });
    }

    let mut items: Vec<Item> = Vec::with_capacity(raw.items.len());
    let mut next_start = first_start;
    let mut parent: Option<usize> = None;
    for raw_item in raw.items {
        let item_what = format!("item {}", raw_item.name);
        if raw_item.subitem {
            let parent_index = parent.ok_or_else(|| {
                invalid(&raw_item.at, &item_what, "subitem comes before any item")
            })?;
            let parent_item = &items[parent_index];
            let start = match (raw_item.start, raw_item.subitem_offset) {
                (Some(start), _) => start,
                (None, Some(offset)) => parent_item.start + offset,
                (None, None) => {
                    return Err(DictionaryError::MissingField {
                        at: raw_item.at,
                        what: item_what,
                        field: "Start",
                    })
                }
            };
            let end = start + raw_item.len * raw_item.occurrences as usize;
            if start < parent_item.start || end > parent_item.start + parent_item.len {
                return Err(invalid(
                    &raw_item.at,
                    &item_what,
                    &format!("does not fit inside its parent item {}", parent_item.name),
                ));
            }
            if raw_item.occurrences > 1 && parent_item.occurrences > 1 {
                return Err(invalid(
                    &raw_item.at,
                    &item_what,
                    "a subitem of a repeating item cannot repeat itself",
                ));
            }
            if raw_item.kind == ItemKind::Binary || parent_item.kind == ItemKind::Binary {
                return Err(invalid(
                    &raw_item.at,
                    &item_what,
                    "binary items have no subitems",
                ));
            }
            items.push(finish_item(raw_item, start, Some(parent_index))?);
        } else {
            let start = match (raw_item.start, next_start) {
                (Some(start), _) => start,
                (None, Some(next)) => next,
                (None, None) => {
                    return Err(DictionaryError::MissingField {
                        at: raw_item.at,
                        what: item_what,
                        field: "Start",
                    })
                }
            };
            next_start = next_start.map(|_| start + raw_item.len * raw_item.occurrences as usize);
            parent = Some(items.len());
            items.push(finish_item(raw_item, start, None)?);
        }
    }

    let mut fields = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        if item.kind == ItemKind::Binary {
            continue;
        }
        let parent = item.subitem_of.map(|p| &items[p]);
        let (count, stride) = match parent {
            Some(p) if p.occurrences > 1 => (p.occurrences, p.len),
            _ => (item.occurrences, item.len),
        };
        if count > 1 {
            for n in 1..=count {
                fields.push(Field {
                    item: index,
                    occurrence: Some(n),
                    start: item.start + (n as usize - 1) * stride,
                    len: item.len,
                });
            }
        } else {
            fields.push(Field {
                item: index,
                occurrence: None,
                start: item.start,
                len: item.len,
            });
        }
    }

    Ok(Record {
        name: raw.name,
        label: raw.label,
        type_value: raw.type_value,
        level,
        required: raw.required,
        max_occurrences: raw.max_occurrences,
        items,
        fields,
    })
}

fn finish_item(
    raw: RawItem,
    start: usize,
    subitem_of: Option<usize>,
) -> Result<Item, DictionaryError> {
    let what = format!("item {}", raw.name);
    if raw.name.is_empty() {
        return Err(DictionaryError::MissingField {
            at: raw.at,
            what: "item".into(),
            field: "Name",
        });
    }
    if start == 0 {
        return Err(DictionaryError::InvalidValue {
            at: raw.at,
            what,
            field: "Start".into(),
            value: "0".into(),
            expected: "positions start at 1",
        });
    }
    if raw.len == 0 {
        return Err(DictionaryError::InvalidValue {
            at: raw.at,
            what,
            field: "Len".into(),
            value: "0".into(),
            expected: "at least 1",
        });
    }
    if raw.kind == ItemKind::Numeric && raw.len > MAX_NUMERIC_LEN {
        return Err(DictionaryError::InvalidValue {
            at: raw.at,
            what,
            field: "Len".into(),
            value: raw.len.to_string(),
            expected: "numeric items are at most 15 characters",
        });
    }
    if raw.occurrences == 0 {
        return Err(DictionaryError::InvalidValue {
            at: raw.at,
            what,
            field: "Occurrences".into(),
            value: "0".into(),
            expected: "at least 1",
        });
    }
    let numeric = raw.kind == ItemKind::Numeric;
    let decimals = if numeric { raw.decimals } else { 0 };
    let decimal_char = numeric && decimals > 0 && raw.decimal_char;
    if decimals as usize + usize::from(decimal_char) > raw.len {
        return Err(DictionaryError::InvalidValue {
            at: raw.at,
            what,
            field: "Decimal".into(),
            value: decimals.to_string(),
            expected: "the decimals (and decimal character) must fit in the length",
        });
    }
    Ok(Item {
        name: raw.name,
        label: raw.label,
        start,
        len: raw.len,
        kind: raw.kind,
        decimals,
        decimal_char,
        zero_fill: numeric && raw.zero_fill,
        occurrences: raw.occurrences,
        subitem_of,
    })
}

// ---------------------------------------------------------------------------------------
// Text form: `[Section]` headers followed by `Key=Value` lines. Sections this model has no
// use for (value sets, relations, languages…) are skipped whole.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Dictionary,
    Level,
    IdItems,
    Record,
    Item,
    Ignored,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ItemOwner {
    None,
    IdItems,
    Record,
}

fn parse_text(text: &str) -> Result<RawDictionary, DictionaryError> {
    let mut dict = RawDictionary {
        form: DictionaryForm::Text,
        version: String::new(),
        name: String::new(),
        label: String::new(),
        record_type_start: 0,
        record_type_len: 0,
        relative_positions: false,
        levels: Vec::new(),
        at: Location::Line(1),
    };
    let mut seen_dictionary = false;
    let mut section = Section::Ignored;
    let mut owner = ItemOwner::None;
    let mut item: Option<RawItem> = None;

    for (index, raw_line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw_line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            flush_item(&mut dict, &mut item, owner);
            let name = &line[1..line.len() - 1];
            let at = Location::Line(line_no);
            section = if name.eq_ignore_ascii_case("Dictionary") {
                seen_dictionary = true;
                dict.at = at;
                Section::Dictionary
            } else if name.eq_ignore_ascii_case("Level") {
                dict.levels.push(RawLevel {
                    name: String::new(),
                    label: String::new(),
                    id_items: Vec::new(),
                    records: Vec::new(),
                    at,
                });
                owner = ItemOwner::None;
                Section::Level
            } else if name.eq_ignore_ascii_case("IdItems") {
                if dict.levels.is_empty() {
                    return Err(invalid(&at, "[IdItems]", "comes before any [Level]"));
                }
                owner = ItemOwner::IdItems;
                Section::IdItems
            } else if name.eq_ignore_ascii_case("Record") {
                let level = dict
                    .levels
                    .last_mut()
                    .ok_or_else(|| invalid(&at, "[Record]", "comes before any [Level]"))?;
                level.records.push(RawRecord {
                    name: String::new(),
                    label: String::new(),
                    type_value: String::new(),
                    required: true,
                    max_occurrences: 1,
                    items: Vec::new(),
                    at,
                });
                owner = ItemOwner::Record;
                Section::Record
            } else if name.eq_ignore_ascii_case("Item") {
                if owner == ItemOwner::None {
                    return Err(invalid(
                        &at,
                        "[Item]",
                        "comes before any [IdItems] or [Record]",
                    ));
                }
                item = Some(RawItem {
                    name: String::new(),
                    label: String::new(),
                    start: None,
                    subitem_offset: None,
                    len: 1,
                    kind: ItemKind::Numeric,
                    subitem: false,
                    decimals: 0,
                    decimal_char: false,
                    zero_fill: false,
                    occurrences: 1,
                    at,
                });
                Section::Item
            } else {
                Section::Ignored
            };
            continue;
        }
        if section == Section::Ignored {
            continue;
        }
        // Lines without `=` are continuations of multi-line notes: nothing to read.
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim();
        let at = Location::Line(line_no);
        match section {
            Section::Dictionary => {
                let what = "[Dictionary]";
                match_key(key, |k| {
                    match k {
                        "version" => dict.version = value.to_string(),
                        "label" => dict.label = value.to_string(),
                        "name" => dict.name = value.to_string(),
                        "recordtypestart" => {
                            dict.record_type_start = parse_number(&at, what, key, value)?
                        }
                        "recordtypelen" => {
                            dict.record_type_len = parse_number(&at, what, key, value)?
                        }
                        "positions" => {
                            dict.relative_positions = if value.eq_ignore_ascii_case("Relative") {
                                true
                            } else if value.eq_ignore_ascii_case("Absolute") {
                                false
                            } else {
                                return Err(bad_value(
                                    &at,
                                    what,
                                    key,
                                    value,
                                    "Relative or Absolute",
                                ));
                            }
                        }
                        _ => {}
                    }
                    Ok(())
                })?;
            }
            Section::Level => {
                let level = dict
                    .levels
                    .last_mut()
                    .expect("a [Level] section has a level");
                match_key(key, |k| {
                    match k {
                        "name" => level.name = value.to_string(),
                        "label" => level.label = value.to_string(),
                        _ => {}
                    }
                    Ok(())
                })?;
            }
            Section::Record => {
                let record = dict
                    .levels
                    .last_mut()
                    .and_then(|l| l.records.last_mut())
                    .expect("a [Record] section has a record");
                let what = if record.name.is_empty() {
                    "[Record]".to_string()
                } else {
                    format!("record {}", record.name)
                };
                match_key(key, |k| {
                    match k {
                        "name" => record.name = value.to_string(),
                        "label" => record.label = value.to_string(),
                        "recordtypevalue" => record.type_value = unquote(value).to_string(),
                        "required" => record.required = parse_yes_no(&at, &what, key, value)?,
                        "maxrecords" => {
                            record.max_occurrences = parse_number(&at, &what, key, value)?
                        }
                        _ => {}
                    }
                    Ok(())
                })?;
            }
            Section::Item => {
                let item = item.as_mut().expect("an [Item] section has an item");
                let what = if item.name.is_empty() {
                    "[Item]".to_string()
                } else {
                    format!("item {}", item.name)
                };
                match_key(key, |k| {
                    match k {
                        "name" => item.name = value.to_string(),
                        "label" => item.label = value.to_string(),
                        "start" => item.start = Some(parse_number(&at, &what, key, value)?),
                        "len" => item.len = parse_number(&at, &what, key, value)?,
                        "occurrences" => item.occurrences = parse_number(&at, &what, key, value)?,
                        "decimal" => item.decimals = parse_number(&at, &what, key, value)?,
                        "decimalchar" => item.decimal_char = parse_yes_no(&at, &what, key, value)?,
                        "zerofill" => item.zero_fill = parse_yes_no(&at, &what, key, value)?,
                        "itemtype" => {
                            item.subitem = if value.eq_ignore_ascii_case("SubItem") {
                                true
                            } else if value.eq_ignore_ascii_case("Item") {
                                false
                            } else {
                                return Err(bad_value(&at, &what, key, value, "Item or SubItem"));
                            }
                        }
                        "datatype" => {
                            item.kind = content_kind(value).ok_or_else(|| {
                                bad_value(&at, &what, key, value, "Numeric, Alpha or a binary type")
                            })?
                        }
                        _ => {}
                    }
                    Ok(())
                })?;
            }
            Section::IdItems | Section::Ignored => {}
        }
    }
    flush_item(&mut dict, &mut item, owner);
    if !seen_dictionary {
        return Err(invalid(
            &Location::Line(1),
            "dictionary",
            "has no [Dictionary] section",
        ));
    }
    Ok(dict)
}

/// Keys are matched case-insensitively; the closure sees them lower-cased.
fn match_key(
    key: &str,
    mut apply: impl FnMut(&str) -> Result<(), DictionaryError>,
) -> Result<(), DictionaryError> {
    let mut buf = [0u8; 32];
    if key.len() > buf.len() || !key.is_ascii() {
        return Ok(());
    }
    let lower = &mut buf[..key.len()];
    lower.copy_from_slice(key.as_bytes());
    lower.make_ascii_lowercase();
    apply(std::str::from_utf8(lower).expect("ASCII stays UTF-8"))
}

fn flush_item(dict: &mut RawDictionary, item: &mut Option<RawItem>, owner: ItemOwner) {
    let Some(item) = item.take() else { return };
    let Some(level) = dict.levels.last_mut() else {
        return;
    };
    match owner {
        ItemOwner::IdItems => level.id_items.push(item),
        ItemOwner::Record => {
            if let Some(record) = level.records.last_mut() {
                record.items.push(item);
            }
        }
        ItemOwner::None => {}
    }
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(value)
}

fn content_kind(value: &str) -> Option<ItemKind> {
    const BINARY: [&str; 6] = ["Binary", "Image", "Audio", "Document", "Geometry", "Media"];
    if value.eq_ignore_ascii_case("Numeric") {
        Some(ItemKind::Numeric)
    } else if value.eq_ignore_ascii_case("Alpha") || value.eq_ignore_ascii_case("Alphanumeric") {
        Some(ItemKind::Alpha)
    } else if BINARY.iter().any(|b| value.eq_ignore_ascii_case(b)) {
        Some(ItemKind::Binary)
    } else {
        None
    }
}

fn bad_value(
    at: &Location,
    what: &str,
    key: &str,
    value: &str,
    expected: &'static str,
) -> DictionaryError {
    DictionaryError::InvalidValue {
        at: at.clone(),
        what: what.to_string(),
        field: key.to_string(),
        value: value.to_string(),
        expected,
    }
}

fn parse_number<T: std::str::FromStr>(
    at: &Location,
    what: &str,
    key: &str,
    value: &str,
) -> Result<T, DictionaryError> {
    value
        .parse()
        .map_err(|_| bad_value(at, what, key, value, "a whole number"))
}

fn parse_yes_no(
    at: &Location,
    what: &str,
    key: &str,
    value: &str,
) -> Result<bool, DictionaryError> {
    if value.eq_ignore_ascii_case("Yes") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("No") {
        Ok(false)
    } else {
        Err(bad_value(at, what, key, value, "Yes or No"))
    }
}

// ---------------------------------------------------------------------------------------
// JSON form (CSPro 7.7+).

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonDictionary {
    #[serde(default)]
    version: Option<serde_json::Value>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: Vec<JsonLabel>,
    #[serde(default)]
    record_type: Option<JsonRecordType>,
    #[serde(default)]
    defaults: JsonDefaults,
    #[serde(default)]
    relative_positions: bool,
    #[serde(default)]
    levels: Vec<JsonLevel>,
}

#[derive(Deserialize)]
struct JsonLabel {
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct JsonRecordType {
    #[serde(default)]
    start: usize,
    #[serde(default)]
    length: usize,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonDefaults {
    #[serde(default)]
    decimal_mark: bool,
    #[serde(default)]
    zero_fill: bool,
}

#[derive(Deserialize)]
struct JsonLevel {
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: Vec<JsonLabel>,
    #[serde(default)]
    ids: JsonIds,
    #[serde(default)]
    records: Vec<JsonRecord>,
}

#[derive(Default, Deserialize)]
struct JsonIds {
    #[serde(default)]
    items: Vec<JsonItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonRecord {
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: Vec<JsonLabel>,
    #[serde(default)]
    record_type: String,
    occurrences: JsonRecordOccurrences,
    #[serde(default)]
    items: Vec<JsonItem>,
}

#[derive(Deserialize)]
struct JsonRecordOccurrences {
    required: bool,
    maximum: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonItem {
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: Vec<JsonLabel>,
    content_type: String,
    #[serde(default)]
    start: Option<usize>,
    #[serde(default)]
    subitem: bool,
    #[serde(default)]
    subitem_offset: Option<usize>,
    #[serde(default)]
    length: Option<usize>,
    #[serde(default)]
    decimals: u8,
    #[serde(default)]
    decimal_mark: Option<bool>,
    #[serde(default)]
    zero_fill: Option<bool>,
    #[serde(default)]
    occurrences: Option<JsonItemOccurrences>,
}

#[derive(Deserialize)]
struct JsonItemOccurrences {
    maximum: u32,
}

fn first_label(labels: &[JsonLabel]) -> String {
    labels.first().map(|l| l.text.clone()).unwrap_or_default()
}

fn parse_json(text: &str) -> Result<RawDictionary, DictionaryError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let json: JsonDictionary =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            DictionaryError::Json {
                at: Location::Path(if path == "." { String::new() } else { path }),
                message: inner.to_string(),
            }
        })?;

    let (record_type_start, record_type_len) = json
        .record_type
        .map(|rt| (rt.start, rt.length))
        .unwrap_or((0, 0));
    let defaults = &json.defaults;
    let version = match &json.version {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };

    let mut levels = Vec::with_capacity(json.levels.len());
    for (l, level) in json.levels.into_iter().enumerate() {
        let level_path = format!("levels[{l}]");
        let id_items = level
            .ids
            .items
            .into_iter()
            .enumerate()
            .map(|(i, item)| json_item(item, defaults, format!("{level_path}.ids.items[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut records = Vec::with_capacity(level.records.len());
        for (r, record) in level.records.into_iter().enumerate() {
            let record_path = format!("{level_path}.records[{r}]");
            let items = record
                .items
                .into_iter()
                .enumerate()
                .map(|(i, item)| json_item(item, defaults, format!("{record_path}.items[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            records.push(RawRecord {
                name: record.name,
                label: first_label(&record.labels),
                type_value: record.record_type,
                required: record.occurrences.required,
                max_occurrences: record.occurrences.maximum,
                items,
                at: Location::Path(record_path),
            });
        }
        levels.push(RawLevel {
            name: level.name,
            label: first_label(&level.labels),
            id_items,
            records,
            at: Location::Path(level_path),
        });
    }

    Ok(RawDictionary {
        form: DictionaryForm::Json,
        version,
        name: json.name,
        label: first_label(&json.labels),
        record_type_start,
        record_type_len,
        relative_positions: json.relative_positions,
        levels,
        at: Location::Path(String::new()),
    })
}

fn json_item(
    item: JsonItem,
    defaults: &JsonDefaults,
    path: String,
) -> Result<RawItem, DictionaryError> {
    let at = Location::Path(path);
    let what = format!("item {}", item.name);
    let kind = content_kind(&item.content_type).ok_or_else(|| {
        bad_value(
            &at,
            &what,
            "contentType",
            &item.content_type,
            "numeric, alpha or a binary type",
        )
    })?;
    // Binary items have no length of their own in the file; CSPro gives them 1.
    let len = match (kind, item.length) {
        (ItemKind::Binary, _) => 1,
        (_, Some(len)) => len,
        (_, None) => {
            return Err(DictionaryError::MissingField {
                at,
                what,
                field: "length",
            })
        }
    };
    Ok(RawItem {
        name: item.name,
        label: first_label(&item.labels),
        start: item.start,
        subitem_offset: item.subitem_offset,
        len,
        kind,
        subitem: item.subitem,
        decimals: item.decimals,
        decimal_char: item.decimal_mark.unwrap_or(defaults.decimal_mark),
        zero_fill: item.zero_fill.unwrap_or(defaults.zero_fill),
        occurrences: item.occurrences.map(|o| o.maximum).unwrap_or(1),
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const POPSTAN_DCF: &str =
        include_str!("../../fixtures/cspro/jhandley_PopstanCensus_CEN2000.dcf");
    const THREE_LEVEL_DCF: &str =
        include_str!("../../fixtures/cspro/cspro_ThreeLevelTest_HOUSEHOLD_DICT.dcf");
    const EXPECTED_COUNTS_DCF: &str =
        include_str!("../../fixtures/cspro/jhandley_ExpectedCounts.dcf");
    const TEST_DICT_JSON: &str = include_str!("../../fixtures/cspro/cspro_TestDict_json.dcf");

    fn item<'a>(record: &'a Record, name: &str) -> &'a Item {
        record
            .items
            .iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("no item {name}"))
    }

    #[test]
    fn popstan_text_dictionary() {
        assert!(POPSTAN_DCF.starts_with('\u{feff}'));
        let dict = Dictionary::parse(POPSTAN_DCF).unwrap();
        assert_eq!(dict.form, DictionaryForm::Text);
        assert_eq!(dict.name, "CEN2000");
        assert_eq!(dict.label, "Popstan Census");
        assert_eq!(dict.version, "CSPro 6.1");
        assert_eq!((dict.record_type_start, dict.record_type_len), (1, 1));
        assert!(dict.relative_positions);
        assert_eq!(dict.levels.len(), 1);

        let ids = &dict.levels[0].id_items;
        let names: Vec<&str> = ids.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            ["PROVINCE", "DISTRICT", "VILLAGE", "EA", "UR", "BUILDING", "HU", "HH"]
        );
        assert_eq!(ids[0].start, 2);
        let last = ids.last().unwrap();
        assert_eq!(last.start + last.len - 1, 19);
        assert!(ids.iter().all(|i| i.is_numeric() && i.zero_fill));

        let records: Vec<(&str, &str, u32, bool)> = dict
            .records
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.type_value.as_str(),
                    r.max_occurrences,
                    r.required,
                )
            })
            .collect();
        assert_eq!(
            records,
            [
                ("PERSON", "1", 30, false),
                ("HOUSING", "2", 1, false),
                ("INTERVIEW_RECORD", "3", 1, false)
            ]
        );
        assert_eq!(dict.levels[0].records, [0, 1, 2]);

        let person = &dict.records[0];
        assert_eq!(person.items.len(), 23);
        let occ = item(person, "P15_OCC");
        assert_eq!((occ.start, occ.len, occ.subitem_of), (39, 2, None));
        let major = item(person, "P15A_OCC");
        assert_eq!((major.start, major.len), (39, 1));
        assert_eq!(person.items[major.subitem_of.unwrap()].name, "P15_OCC");

        let interview = &dict.records[2];
        let enumerator = item(interview, "ENUMERATOR");
        assert_eq!(enumerator.kind, ItemKind::Alpha);
        assert_eq!((enumerator.start, enumerator.len), (28, 20));
        let date = item(interview, "INTERVIEW_DATE");
        assert!(date.is_numeric() && !date.zero_fill);
        let day = item(interview, "INTERVIEW_DAY");
        assert_eq!((day.start, day.len), (26, 2));
        assert_eq!(
            interview.items[day.subitem_of.unwrap()].name,
            "INTERVIEW_DATE"
        );
        // One field per item: nothing repeats in Popstan.
        assert_eq!(interview.fields().len(), interview.items.len());
    }

    #[test]
    fn three_level_text_dictionary_with_crlf_repeats_and_decimals() {
        assert!(THREE_LEVEL_DCF.contains("\r\n"));
        let dict = Dictionary::parse(THREE_LEVEL_DCF).unwrap();
        assert_eq!(dict.name, "HOUSEHOLD_DICT");
        let levels: Vec<(&str, usize, usize)> = dict
            .levels
            .iter()
            .map(|l| (l.name.as_str(), l.id_items.len(), l.records.len()))
            .collect();
        assert_eq!(
            levels,
            [
                ("COMPOUND_LEVEL", 6, 1),
                ("HOUSING_UNIT_LEVEL", 1, 1),
                ("HOUSEHOLD_LEVEL", 1, 2)
            ]
        );
        let village = &dict.levels[0].id_items[2];
        assert_eq!(
            (village.name.as_str(), village.kind),
            ("VILLAGE", ItemKind::Alpha)
        );
        let level_of: Vec<(&str, usize)> = dict
            .records
            .iter()
            .map(|r| (r.name.as_str(), r.level))
            .collect();
        assert_eq!(
            level_of,
            [
                ("COMPOUND_INFO_REC", 0),
                ("HOUSING_UNIT_REC", 1),
                ("HOUSEHOLD_REC", 2),
                ("PERSON_REC", 2)
            ]
        );

        let compound = &dict.records[0];
        let latitude = item(compound, "LATITUDE");
        assert_eq!(
            (latitude.len, latitude.decimals, latitude.decimal_char),
            (15, 5, true)
        );
        let units: Vec<(Option<u32>, usize)> = compound
            .fields()
            .iter()
            .filter(|f| compound.item(f).name == "HOUSING_UNITS")
            .map(|f| (f.occurrence, f.start))
            .collect();
        assert_eq!(
            units,
            [
                (Some(1), 48),
                (Some(2), 50),
                (Some(3), 52),
                (Some(4), 54),
                (Some(5), 56)
            ]
        );

        let person = &dict.records[3];
        let starts = |name: &str| -> Vec<(Option<u32>, usize)> {
            person
                .fields()
                .iter()
                .filter(|f| person.item(f).name == name)
                .map(|f| (f.occurrence, f.start))
                .collect()
        };
        // A repeating subitem steps by its own length…
        assert_eq!(
            starts("REPEATING_SUBITEM"),
            [(Some(1), 154), (Some(2), 155), (Some(3), 156)]
        );
        assert_eq!(starts("NOT_REPEATING_SUBITEM"), [(None, 157)]);
        // …a subitem of a repeating item steps by its parent's.
        assert_eq!(starts("REPEATING_PARENT"), [(Some(1), 158), (Some(2), 160)]);
        assert_eq!(starts("SUB_ONE"), [(Some(1), 158), (Some(2), 160)]);
        assert_eq!(starts("SUB_TWO"), [(Some(1), 159), (Some(2), 161)]);
    }

    #[test]
    fn expected_counts_has_no_record_type() {
        let dict = Dictionary::parse(EXPECTED_COUNTS_DCF).unwrap();
        assert_eq!(dict.name, "EXPECTEDCOUNTS_DICT");
        assert_eq!((dict.record_type_start, dict.record_type_len), (0, 0));
        assert_eq!(dict.records.len(), 1);
        assert_eq!(dict.records[0].type_value, "");
        assert_eq!(dict.levels[0].id_items[0].name, "EC_EA");
        assert_eq!(dict.records[0].items[0].start, 4);
    }

    #[test]
    fn json_dictionary_computes_relative_starts() {
        let dict = Dictionary::parse(TEST_DICT_JSON).unwrap();
        assert_eq!(dict.form, DictionaryForm::Json);
        assert_eq!(dict.name, "TESTDICT_DICT");
        assert_eq!(dict.label, "TestDict");
        assert_eq!(dict.version, "7.7");
        assert_eq!((dict.record_type_start, dict.record_type_len), (1, 1));
        let id = &dict.levels[0].id_items[0];
        assert_eq!((id.name.as_str(), id.start, id.len), ("TESTDICT_ID", 2, 1));
        let record = &dict.records[0];
        assert_eq!(
            (
                record.type_value.as_str(),
                record.required,
                record.max_occurrences
            ),
            ("1", true, 5)
        );
        let text = item(record, "TEST_ITEM");
        assert_eq!((text.kind, text.start, text.len), (ItemKind::Alpha, 3, 30));
        let image = item(record, "TEST_IMAGE");
        assert_eq!((image.kind, image.start), (ItemKind::Binary, 33));
        // The image has no field: it cannot be read from text nor stored in a column.
        assert_eq!(record.fields().len(), 1);
    }

    #[test]
    fn json_subitem_offsets_and_bom() {
        let json = "\u{feff}{\"name\":\"X_DICT\",\"recordType\":{\"start\":1,\"length\":1},\
            \"relativePositions\":true,\"defaults\":{\"zeroFill\":true},\
            \"levels\":[{\"name\":\"L\",\"ids\":{\"items\":[{\"name\":\"ID\",\"contentType\":\"numeric\",\"start\":2,\"length\":3}]},\
            \"records\":[{\"name\":\"R\",\"recordType\":\"A\",\"occurrences\":{\"required\":false,\"maximum\":1},\"items\":[\
              {\"name\":\"A\",\"contentType\":\"numeric\",\"length\":2,\"occurrences\":{\"maximum\":2}},\
              {\"name\":\"D\",\"contentType\":\"numeric\",\"length\":6},\
              {\"name\":\"D_Y\",\"contentType\":\"numeric\",\"subitem\":true,\"subitemOffset\":2,\"length\":4},\
              {\"name\":\"M\",\"contentType\":\"numeric\",\"length\":5,\"decimals\":2,\"decimalMark\":false}]}]}]}";
        let dict = Dictionary::parse(json).unwrap();
        let r = &dict.records[0];
        let starts: Vec<(&str, usize)> =
            r.items.iter().map(|i| (i.name.as_str(), i.start)).collect();
        assert_eq!(starts, [("A", 5), ("D", 9), ("D_Y", 11), ("M", 15)]);
        assert!(r.items[0].zero_fill, "zeroFill falls back to the defaults");
        assert_eq!((r.items[3].decimals, r.items[3].decimal_char), (2, false));
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let bad_len = POPSTAN_DCF.replacen("Len=2", "Len=two", 1);
        let err = Dictionary::parse(&bad_len).unwrap_err();
        let line = POPSTAN_DCF
            .lines()
            .position(|l| l == "Len=2")
            .map(|i| i + 1)
            .unwrap();
        assert_eq!(
            err,
            DictionaryError::InvalidValue {
                at: Location::Line(line),
                what: "item PROVINCE".into(),
                field: "Len".into(),
                value: "two".into(),
                expected: "a whole number",
            }
        );
        assert!(err
            .to_string()
            .starts_with(&format!("line {line}: item PROVINCE")));

        let dup = POPSTAN_DCF.replace("RecordTypeValue='2'", "RecordTypeValue='1'");
        let err = Dictionary::parse(&dup).unwrap_err().to_string();
        assert!(err.contains("HOUSING") && err.contains("PERSON"), "{err}");

        let orphan =
            "[Dictionary]\nName=D\n[Level]\nName=L\n[IdItems]\n[Item]\nName=I\nStart=1\nLen=1\n\
            [Record]\nName=R\n[Item]\nName=S\nStart=2\nLen=1\nItemType=SubItem\n";
        let err = Dictionary::parse(orphan).unwrap_err();
        assert!(
            matches!(&err, DictionaryError::Invalid { at: Location::Line(12), what, .. } if what == "item S"),
            "{err}"
        );

        let bad_json = TEST_DICT_JSON.replace("\"length\": 30", "\"length\": \"thirty\"");
        let err = Dictionary::parse(&bad_json).unwrap_err();
        match err {
            DictionaryError::Json { at, .. } => {
                assert_eq!(
                    at,
                    Location::Path("levels[0].records[0].items[0].length".into())
                )
            }
            other => panic!("{other}"),
        }

        assert_eq!(
            Dictionary::parse("\u{feff}  \n"),
            Err(DictionaryError::Empty)
        );
    }
}
