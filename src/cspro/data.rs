//! Cases read from fixed-width CSPro text data (`.dat`), and the value model every reader
//! fills.
//!
//! A breakout must turn tens of thousands of cases into rows within seconds, and must not
//! let one bad line cost the rest of a file. So the reader walks the data once, a line at a
//! time from any [`BufRead`] (a file of any size costs the memory of one case, not of the
//! file), slices fields out of each line without copying, turns numbers into exact scaled
//! integers, and records whatever it cannot read as an [`Issue`] on the case it belongs to
//! (with its line number) while keeping everything else on that line.
//! [`ReadOptions::strict`] turns the first issue into an error instead, for callers who
//! would rather stop. What no CSPro file holds is an error whatever the options: a line
//! over [`MAX_LINE_BYTES`], or a case (with the bad lines attached to it) over
//! [`MAX_CASE_BYTES`], so a file that is not CSPro data cannot fill memory.
//!
//! How the text is read, following CSPro:
//! - a case is a run of consecutive lines with the same first-level id values; its key is
//!   those id texts side by side, as CSPro's own case key;
//! - lines of a deeper level belong to the level node named by their own level's ids, and
//!   each record's occurrences are numbered within that node;
//! - CSPro drops trailing blanks when it writes a line, so a line may end before its
//!   record does: the missing fields are blank. A line is *short* only when it ends inside
//!   its record type or id items, where nothing can be guessed;
//! - positions count characters, not bytes (CSPro 7 data are UTF-8), with a fast path for
//!   the usual all-ASCII line; a line that is not UTF-8 is Windows-1252 (CSPro before
//!   version 7), and so is every line after it;
//! - a blank field is "not applicable" and becomes [`Value::Null`]; an alpha value loses
//!   its trailing blanks (padding, not data); a numeric field of asterisks is CSPro's
//!   DEFAULT (a value that did not fit) and becomes [`Special::Default`];
//! - numeric items with decimals and `DecimalChar=No` have their decimal point implied;
//!   an explicit `.` (or `,`) is honoured wherever it appears.
//!
//! A line that cannot be placed (unknown record type, short line) is attached to the case
//! being read, or to the next case when it comes before any; it never starts a case of its
//! own, so garbage cannot invent cases.

use std::borrow::Cow;
use std::fmt;
use std::io::{BufRead, Read};

use super::dictionary::{Dictionary, Item, ItemKind};

/// An exact decimal: `mantissa × 10^-scale`. Numbers are kept at their item's scale (or
/// more, when the data wrote more decimals than declared), so a store can bind them to a
/// `NUMERIC` column from [`Number::to_string`] or, at scale 0, as an integer, without the
/// rounding a float would bring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Number {
    mantissa: i64,
    scale: u8,
}

/// CSPro numbers have at most 15 characters, so 18 decimal digits hold any of them.
pub const MAX_SCALE: u8 = 18;

impl Number {
    /// Panics when `scale` is above [`MAX_SCALE`].
    pub const fn new(mantissa: i64, scale: u8) -> Number {
        assert!(scale <= MAX_SCALE, "scale above MAX_SCALE");
        Number { mantissa, scale }
    }

    pub fn mantissa(self) -> i64 {
        self.mantissa
    }

    pub fn scale(self) -> u8 {
        self.scale
    }

    /// The whole number this is, if it has no fractional part.
    pub fn as_i64(self) -> Option<i64> {
        let divisor = 10i64.checked_pow(self.scale as u32)?;
        (self.mantissa % divisor == 0).then_some(self.mantissa / divisor)
    }

    pub fn to_f64(self) -> f64 {
        self.mantissa as f64 / 10f64.powi(self.scale as i32)
    }

    /// The same value at a scale at least as large; `None` when it would overflow.
    pub fn with_scale(self, scale: u8) -> Option<Number> {
        if scale < self.scale || scale > MAX_SCALE {
            return None;
        }
        let factor = 10i64.checked_pow((scale - self.scale) as u32)?;
        Some(Number::new(self.mantissa.checked_mul(factor)?, scale))
    }

    /// The nearest number at `scale`, for values that were stored as floating point (CSPro
    /// SQLite files); `None` for values that are not finite or too large.
    pub fn from_f64(value: f64, scale: u8) -> Option<Number> {
        if scale > MAX_SCALE {
            return None;
        }
        let scaled = (value * 10f64.powi(scale as i32)).round();
        if !scaled.is_finite() || scaled.abs() >= 9.0e18 {
            return None;
        }
        Some(Number::new(scaled as i64, scale))
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let magnitude = self.mantissa.unsigned_abs();
        if self.mantissa < 0 {
            f.write_str("-")?;
        }
        if self.scale == 0 {
            return write!(f, "{magnitude}");
        }
        let divisor = 10u64.pow(self.scale as u32);
        write!(
            f,
            "{}.{:0width$}",
            magnitude / divisor,
            magnitude % divisor,
            width = self.scale as usize
        )
    }
}

/// CSPro's special numeric values other than "not applicable" (which is [`Value::Null`]).
/// None of them fits a `NUMERIC` column: a store writes them as NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Special {
    Missing,
    Default,
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Number(Number),
    Text(String),
    Special(Special),
}

impl Value {
    pub fn number(mantissa: i64, scale: u8) -> Value {
        Value::Number(Number::new(mantissa, scale))
    }

    pub fn text(text: &str) -> Value {
        Value::Text(text.to_string())
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// 1-based line of the data file (or of the case's text in an older `.csdb`); `None`
    /// for values read from relational `.csdb` tables, which have no lines.
    pub line: Option<usize>,
    pub kind: IssueKind,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueKind {
    /// The line's record type matches no record; the line is not read.
    UnknownRecordType,
    /// The line ends inside its record type or id items; the line is not read.
    ShortLine,
    /// A numeric item holds something else; that value is NULL, the rest of the line is read.
    NotNumeric { item: String },
    /// More occurrences of a record than the dictionary allows; all are kept.
    TooManyOccurrences { record: String },
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        match &self.kind {
            IssueKind::UnknownRecordType => f.write_str("unknown record type")?,
            IssueKind::ShortLine => f.write_str("short line")?,
            IssueKind::NotNumeric { item } => write!(f, "{item} is not numeric")?,
            IssueKind::TooManyOccurrences { record } => write!(f, "too many {record} records")?,
        }
        write!(f, ": {}", self.detail)
    }
}

/// One case, whatever file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// 1-based position of the case in its source: unique within it even when a file
    /// repeats a case key, so it serves as the row id of a breakout.
    pub number: u64,
    /// CSPro's case key: the first-level id texts side by side.
    pub key: String,
    /// The case's UUID in a `.csdb` file; text data have none.
    pub uuid: Option<String>,
    /// The first line read for the case, for text data.
    pub first_line: Option<usize>,
    /// First-level id values, in dictionary order.
    pub ids: Vec<Value>,
    /// Every record read, in source order.
    pub records: Vec<RecordRow>,
    pub issues: Vec<Issue>,
    /// What a `.csdb` keeps beside a case's data (text data have none of it).
    pub meta: CaseMeta,
    /// The notes an interviewer left on the case's fields (`.csdb` only).
    pub notes: Vec<Note>,
}

/// A case's bookkeeping in a `.csdb` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseMeta {
    /// CSPro's case label (empty or absent: none).
    pub label: Option<String>,
    /// Kept as a tombstone for synchronisation.
    pub deleted: bool,
    pub verified: bool,
    pub last_modified_revision: Option<i64>,
    pub partial_save_mode: Option<String>,
    pub partial_save_field_name: Option<String>,
    pub partial_save_level_key: Option<String>,
    pub partial_save_record_occurrence: Option<i64>,
    pub partial_save_item_occurrence: Option<i64>,
    pub partial_save_subitem_occurrence: Option<i64>,
}

/// A note on a field of a case, as a `.csdb` keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub field_name: String,
    pub level_key: String,
    pub record_occurrence: i64,
    pub item_occurrence: i64,
    pub subitem_occurrence: i64,
    pub content: String,
    pub operator_id: String,
    /// Unix seconds.
    pub modified_time: i64,
}

impl Case {
    /// The rows of one record (an index into `Dictionary::records`).
    pub fn rows_of(&self, record: usize) -> impl Iterator<Item = &RecordRow> {
        self.records.iter().filter(move |r| r.record == record)
    }

    /// About the memory the case holds, so that a reader can bound how much it keeps.
    pub fn weight(&self) -> usize {
        use std::mem::size_of;
        let value = |v: &Value| {
            size_of::<Value>()
                + match v {
                    Value::Text(t) => t.len(),
                    _ => 0,
                }
        };
        let records: usize = self
            .records
            .iter()
            .map(|r| {
                size_of::<RecordRow>()
                    + r.values
                        .iter()
                        .chain(&r.level_ids)
                        .map(value)
                        .sum::<usize>()
            })
            .sum();
        let issues: usize = self
            .issues
            .iter()
            .map(|i| size_of::<Issue>() + i.detail.len())
            .sum();
        size_of::<Case>()
            + self.key.len()
            + self.ids.iter().map(value).sum::<usize>()
            + records
            + issues
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRow {
    /// Index into `Dictionary::records`.
    pub record: usize,
    pub line: Option<usize>,
    /// 1-based number of the record's level node among the case's nodes of that level
    /// (always 1 for first-level records).
    pub node: u32,
    /// Id values of the levels below the first, down to the record's own level.
    pub level_ids: Vec<Value>,
    /// The node numbers of the levels below the first, down to the record's own (whose
    /// number is `node`): where the record sits in the case's tree of nodes.
    pub path: Vec<u32>,
    /// 1-based occurrence of the record within its node.
    pub occurrence: u32,
    /// One value per field of the record (`Record::fields`), in that order.
    pub values: Vec<Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Stop at the first case with an issue, as an error, instead of reporting it.
    pub strict: bool,
}

/// Longest line a text data file may have. CSPro records are at most a few thousand
/// characters; a longer line means the file is not CSPro text data.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Most text a case may span, its bad lines included. A case with hundreds of persons is
/// a few hundred kilobytes.
pub const MAX_CASE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("case {case_key:?}: {issue}")]
    Strict { case_key: String, issue: Issue },
    /// Bad lines in a file where no line could be read at all.
    #[error("no case could be read: {issue}")]
    NoCase { issue: Issue },
    #[error("line {line} is longer than {limit} bytes: this is not CSPro text data")]
    LineTooLong { line: usize, limit: usize },
    #[error(
        "case {case_key:?} spans more than {limit} bytes of lines: this is not CSPro data, or not data of this dictionary"
    )]
    CaseTooLarge { case_key: String, limit: usize },
    #[error("the data could not be read: {0}")]
    Read(String),
}

/// The text of a data file: without its UTF-8 BOM, and decoded as Windows-1252 when it is
/// not UTF-8 (CSPro before version 7 wrote the machine's ANSI code page, which for the
/// French, Spanish and Portuguese surveys it mostly serves is Windows-1252). One byte is
/// one character either way, so positions are unchanged.
pub fn decode_text(bytes: &[u8]) -> Cow<'_, str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| windows_1252(b)).collect()),
    }
}

/// Where Windows-1252 differs from Latin-1 (bytes 0x80–0x9F); undefined bytes keep their
/// Latin-1 control character.
fn windows_1252(byte: u8) -> char {
    const HIGH: [char; 32] = [
        '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}',
        '\u{017D}', '\u{008F}', '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}',
        '\u{2022}', '\u{2013}', '\u{2014}', '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}',
        '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
    ];
    match byte {
        0x80..=0x9F => HIGH[(byte - 0x80) as usize],
        _ => byte as char,
    }
}

/// The lines of a text data file, decoded one at a time into `text`: without the BOM of
/// the first line and the line end, as UTF-8 until a line is not, then as Windows-1252
/// (one byte is one character either way, so positions are unchanged).
struct Lines<R> {
    reader: R,
    raw: Vec<u8>,
    text: String,
    /// 1-based number of the line last read.
    number: usize,
    ansi: bool,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R) -> Self {
        Lines {
            reader,
            raw: Vec::new(),
            text: String::new(),
            number: 0,
            ansi: false,
        }
    }

    /// The next line with its number and its length in the file, or `None` at the end.
    fn next(&mut self) -> Result<Option<(&str, usize, usize)>, DataError> {
        self.raw.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.raw)
            .map_err(|e| DataError::Read(e.to_string()))?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        if self.raw.last() == Some(&b'\n') {
            self.raw.pop();
        } else if read as u64 == limit {
            return Err(DataError::LineTooLong {
                line: self.number,
                limit: MAX_LINE_BYTES,
            });
        }
        if self.raw.last() == Some(&b'\r') {
            self.raw.pop();
        }
        let bytes = match self.number {
            1 => self.raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&self.raw),
            _ => &self.raw,
        };
        if self.ansi || std::str::from_utf8(bytes).is_err() {
            self.ansi = true;
            self.text.clear();
            self.text.extend(bytes.iter().map(|&b| windows_1252(b)));
            return Ok(Some((&self.text, self.number, read)));
        }
        Ok(Some((
            std::str::from_utf8(bytes).unwrap_or_default(),
            self.number,
            read,
        )))
    }
}

/// Reads cases one at a time from a `.dat` file.
pub struct DatReader<'d, R> {
    parser: LineParser<'d>,
    lines: Lines<R>,
    options: ReadOptions,
    next_number: u64,
    current: Option<CaseBuilder<'d>>,
    /// Bad lines seen before the first case.
    pending: Vec<Issue>,
    /// Bytes of the lines of the case being read (or of the pending bad lines).
    case_bytes: usize,
    key: String,
    finished: bool,
}

impl<'d, 't> DatReader<'d, &'t [u8]> {
    /// Reads text already in memory.
    pub fn new(dictionary: &'d Dictionary, text: &'t str, options: ReadOptions) -> Self {
        Self::from_reader(dictionary, text.as_bytes(), options)
    }
}

impl<'d, R: BufRead> DatReader<'d, R> {
    /// Reads the bytes of a file as they come.
    pub fn from_reader(dictionary: &'d Dictionary, reader: R, options: ReadOptions) -> Self {
        DatReader {
            parser: LineParser::new(dictionary),
            lines: Lines::new(reader),
            options,
            next_number: 1,
            current: None,
            pending: Vec::new(),
            case_bytes: 0,
            key: String::new(),
            finished: false,
        }
    }

    fn deliver(&mut self, case: Case) -> Result<Case, DataError> {
        if self.options.strict {
            if let Some(issue) = case.issues.first() {
                self.finished = true;
                return Err(DataError::Strict {
                    case_key: case.key.clone(),
                    issue: issue.clone(),
                });
            }
        }
        Ok(case)
    }

    fn fail(&mut self, error: DataError) -> Option<Result<Case, DataError>> {
        self.finished = true;
        Some(Err(error))
    }
}

impl<R: BufRead> Iterator for DatReader<'_, R> {
    type Item = Result<Case, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        loop {
            let (line, number, length) = match self.lines.next() {
                Ok(Some(line)) => line,
                Ok(None) => {
                    self.finished = true;
                    return match self.current.take() {
                        Some(builder) => Some(self.deliver(builder.finish())),
                        None => self
                            .pending
                            .drain(..)
                            .next()
                            .map(|issue| Err(DataError::NoCase { issue })),
                    };
                }
                Err(e) => return self.fail(e),
            };
            if is_blank(line) {
                continue;
            }
            let line_no = Some(number);
            self.parser.prepare(line);
            let view = self.parser.view(line);
            let record = match self.parser.classify(&view) {
                Ok(record) => record,
                Err((kind, detail)) => {
                    let issue = Issue {
                        line: line_no,
                        kind,
                        detail,
                    };
                    self.case_bytes += length;
                    let case_key = match &mut self.current {
                        Some(builder) => {
                            builder.case.issues.push(issue);
                            &builder.case.key
                        }
                        None => {
                            self.pending.push(issue);
                            ""
                        }
                    };
                    if self.case_bytes > MAX_CASE_BYTES {
                        let case_key = case_key.to_owned();
                        return self.fail(DataError::CaseTooLarge {
                            case_key,
                            limit: MAX_CASE_BYTES,
                        });
                    }
                    continue;
                }
            };
            self.parser.case_key(&view, &mut self.key);
            if let Some(builder) = self.current.as_mut().filter(|b| b.case.key == self.key) {
                self.case_bytes += length;
                if self.case_bytes > MAX_CASE_BYTES {
                    let case_key = builder.case.key.clone();
                    return self.fail(DataError::CaseTooLarge {
                        case_key,
                        limit: MAX_CASE_BYTES,
                    });
                }
                builder.push(&view, record, line_no);
                continue;
            }
            let mut builder = CaseBuilder::new(
                self.parser.dictionary,
                self.next_number,
                self.key.clone(),
                line_no,
            );
            self.next_number += 1;
            builder.case.issues.append(&mut self.pending);
            // Bad lines before the first case count towards it, as they are attached to it.
            self.case_bytes = if self.current.is_some() {
                0
            } else {
                self.case_bytes
            } + length;
            builder.push(&view, record, line_no);
            if let Some(done) = self.current.replace(builder) {
                return Some(self.deliver(done.finish()));
            }
        }
    }
}

fn is_blank(line: &str) -> bool {
    line.bytes().all(|b| b == b' ' || b == b'\t')
}

/// One case from CSPro text lines that are known to form one case (the questionnaire
/// text of an older `.csdb`), whatever their ids say.
pub(crate) fn case_from_lines(
    dictionary: &Dictionary,
    text: &str,
    number: u64,
    key: String,
    uuid: Option<String>,
) -> Case {
    let mut parser = LineParser::new(dictionary);
    let mut builder = CaseBuilder::new(dictionary, number, key, None);
    builder.case.uuid = uuid;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if is_blank(line) {
            continue;
        }
        let line_no = Some(index + 1);
        builder.case.first_line.get_or_insert(index + 1);
        parser.prepare(line);
        let view = parser.view(line);
        match parser.classify(&view) {
            Ok(record) => builder.push(&view, record, line_no),
            Err((kind, detail)) => builder.case.issues.push(Issue {
                line: line_no,
                kind,
                detail,
            }),
        }
    }
    builder.finish()
}

// ---------------------------------------------------------------------------------------
// Lines

/// A line seen as characters: byte offsets of each character when the line is not ASCII.
struct LineView<'l> {
    text: &'l str,
    /// Empty for ASCII lines; otherwise the byte offset of every character, plus the end.
    offsets: &'l [usize],
}

impl<'l> LineView<'l> {
    fn char_len(&self) -> usize {
        if self.offsets.is_empty() {
            self.text.len()
        } else {
            self.offsets.len() - 1
        }
    }

    /// The text at 1-based character `start` for `len` characters; shorter (or empty)
    /// where the line ends early.
    fn field(&self, start: usize, len: usize) -> &'l str {
        let from = (start - 1).min(self.char_len());
        let to = (start - 1 + len).min(self.char_len());
        if self.offsets.is_empty() {
            &self.text[from..to]
        } else {
            &self.text[self.offsets[from]..self.offsets[to]]
        }
    }
}

struct LineParser<'d> {
    dictionary: &'d Dictionary,
    /// Characters a line of each level needs to hold its record type and ids.
    key_end: Vec<usize>,
    offsets: Vec<usize>,
    ascii: bool,
}

impl<'d> LineParser<'d> {
    fn new(dictionary: &'d Dictionary) -> Self {
        let record_type_end = dictionary.record_type_start + dictionary.record_type_len;
        let mut end = record_type_end.saturating_sub(1);
        let key_end = dictionary
            .levels
            .iter()
            .map(|level| {
                for item in &level.id_items {
                    end = end.max(item.start + item.len - 1);
                }
                end
            })
            .collect();
        LineParser {
            dictionary,
            key_end,
            offsets: Vec::new(),
            ascii: true,
        }
    }

    fn prepare(&mut self, line: &str) {
        self.ascii = line.is_ascii();
        self.offsets.clear();
        if !self.ascii {
            self.offsets.extend(line.char_indices().map(|(i, _)| i));
            self.offsets.push(line.len());
        }
    }

    fn view<'l>(&'l self, line: &'l str) -> LineView<'l> {
        LineView {
            text: line,
            offsets: if self.ascii { &[] } else { &self.offsets },
        }
    }

    fn classify(&self, view: &LineView<'_>) -> Result<usize, (IssueKind, String)> {
        let dict = self.dictionary;
        let record = if dict.record_type_len == 0 {
            0
        } else {
            let type_end = dict.record_type_start + dict.record_type_len - 1;
            if view.char_len() < type_end {
                return Err((
                    IssueKind::ShortLine,
                    format!(
                        "{} characters, the record type ends at {type_end}",
                        view.char_len()
                    ),
                ));
            }
            let value = view.field(dict.record_type_start, dict.record_type_len);
            dict.records
                .iter()
                .position(|r| r.type_value == value)
                .ok_or_else(|| {
                    (
                        IssueKind::UnknownRecordType,
                        format!("record type {value:?} is not in dictionary {}", dict.name),
                    )
                })?
        };
        let needed = self.key_end[dict.records[record].level];
        if view.char_len() < needed {
            return Err((
                IssueKind::ShortLine,
                format!(
                    "{} characters, the ids of a {} record end at {needed}",
                    view.char_len(),
                    dict.records[record].name
                ),
            ));
        }
        Ok(record)
    }

    fn case_key(&self, view: &LineView<'_>, key: &mut String) {
        key.clear();
        for item in &self.dictionary.levels[0].id_items {
            key.push_str(view.field(item.start, item.len));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Cases

struct Node {
    level: usize,
    key: String,
    number: u32,
}

struct CaseBuilder<'d> {
    dictionary: &'d Dictionary,
    case: Case,
    nodes: Vec<Node>,
    /// (record, node, occurrences so far)
    occurrences: Vec<(usize, u32, u32)>,
    scratch: String,
}

impl<'d> CaseBuilder<'d> {
    fn new(
        dictionary: &'d Dictionary,
        number: u64,
        key: String,
        first_line: Option<usize>,
    ) -> Self {
        CaseBuilder {
            dictionary,
            case: Case {
                number,
                key,
                uuid: None,
                first_line,
                ids: Vec::new(),
                records: Vec::new(),
                issues: Vec::new(),
                meta: CaseMeta::default(),
                notes: Vec::new(),
            },
            nodes: Vec::new(),
            occurrences: Vec::new(),
            scratch: String::new(),
        }
    }

    fn push(&mut self, view: &LineView<'_>, record_index: usize, line: Option<usize>) {
        let dict = self.dictionary;
        let record = &dict.records[record_index];
        let issues = &mut self.case.issues;

        if self.case.records.is_empty() && self.case.ids.is_empty() {
            self.case.ids = dict.levels[0]
                .id_items
                .iter()
                .map(|item| read_value(view.field(item.start, item.len), item, None, line, issues))
                .collect();
        }

        let (node, level_ids, path) = if record.level == 0 {
            (1, Vec::new(), Vec::new())
        } else {
            let deeper = || {
                dict.levels[1..=record.level]
                    .iter()
                    .flat_map(|l| &l.id_items)
            };
            // A node of each level down to the record's, named by the ids of the levels
            // above it and its own: a deeper line without a line of its parent's level
            // still has a parent node.
            self.scratch.clear();
            let mut path = Vec::with_capacity(record.level);
            for level in 1..=record.level {
                for item in &dict.levels[level].id_items {
                    self.scratch.push_str(view.field(item.start, item.len));
                }
                let number = match self
                    .nodes
                    .iter()
                    .find(|n| n.level == level && n.key == self.scratch)
                {
                    Some(node) => node.number,
                    None => {
                        let number =
                            self.nodes.iter().filter(|n| n.level == level).count() as u32 + 1;
                        self.nodes.push(Node {
                            level,
                            key: self.scratch.clone(),
                            number,
                        });
                        number
                    }
                };
                path.push(number);
            }
            let ids = deeper()
                .map(|item| read_value(view.field(item.start, item.len), item, None, line, issues))
                .collect();
            (*path.last().unwrap_or(&1), ids, path)
        };

        let occurrence = match self
            .occurrences
            .iter_mut()
            .find(|(r, n, _)| *r == record_index && *n == node)
        {
            Some((_, _, count)) => {
                *count += 1;
                *count
            }
            None => {
                self.occurrences.push((record_index, node, 1));
                1
            }
        };
        if occurrence > record.max_occurrences {
            issues.push(Issue {
                line,
                kind: IssueKind::TooManyOccurrences {
                    record: record.name.clone(),
                },
                detail: format!(
                    "occurrence {occurrence}, the dictionary allows {}",
                    record.max_occurrences
                ),
            });
        }

        let fields = record.fields();
        let mut values = Vec::with_capacity(fields.len());
        for field in fields {
            let item = record.item(field);
            values.push(read_value(
                view.field(field.start, field.len),
                item,
                field.occurrence,
                line,
                issues,
            ));
        }

        self.case.records.push(RecordRow {
            record: record_index,
            line,
            node,
            level_ids,
            path,
            occurrence,
            values,
        });
    }

    fn finish(mut self) -> Case {
        // A case whose lines were all unreadable still has one (empty) id per id item.
        if self.case.ids.is_empty() {
            self.case.ids = vec![Value::Null; self.dictionary.levels[0].id_items.len()];
        }
        self.case
    }
}

/// A field's value, or NULL and an issue when a numeric field holds something else.
fn read_value(
    text: &str,
    item: &Item,
    occurrence: Option<u32>,
    line: Option<usize>,
    issues: &mut Vec<Issue>,
) -> Value {
    match parse_field(text, item) {
        Ok(value) => value,
        Err(()) => {
            issues.push(not_numeric(item, occurrence, line, text));
            Value::Null
        }
    }
}

pub(crate) fn not_numeric(
    item: &Item,
    occurrence: Option<u32>,
    line: Option<usize>,
    text: &str,
) -> Issue {
    let detail = match occurrence {
        Some(n) => format!("{}({n}) holds {text:?}", item.name),
        None => format!("{} holds {text:?}", item.name),
    };
    Issue {
        line,
        kind: IssueKind::NotNumeric {
            item: item.name.clone(),
        },
        detail,
    }
}

/// The value of one field's text; `Err` when a numeric item holds something that is not
/// a number.
pub(crate) fn parse_field(text: &str, item: &Item) -> Result<Value, ()> {
    match item.kind {
        ItemKind::Numeric => parse_number(text, item),
        ItemKind::Alpha | ItemKind::Binary => {
            let trimmed = text.trim_end_matches(' ');
            Ok(if trimmed.is_empty() {
                Value::Null
            } else {
                Value::Text(trimmed.to_string())
            })
        }
    }
}

fn parse_number(text: &str, item: &Item) -> Result<Value, ()> {
    let bytes = text.as_bytes();
    let mut from = 0;
    let mut to = bytes.len();
    while from < to && bytes[from] == b' ' {
        from += 1;
    }
    while to > from && bytes[to - 1] == b' ' {
        to -= 1;
    }
    let digits = &bytes[from..to];
    if digits.is_empty() {
        return Ok(Value::Null);
    }
    if digits.iter().all(|&b| b == b'*') {
        return Ok(Value::Special(Special::Default));
    }
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    let mut mantissa: i64 = 0;
    let mut fraction_digits: Option<u8> = None;
    let mut any_digit = false;
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                any_digit = true;
                mantissa = mantissa
                    .checked_mul(10)
                    .and_then(|m| m.checked_add((b - b'0') as i64))
                    .ok_or(())?;
                if let Some(n) = fraction_digits.as_mut() {
                    *n += 1;
                }
            }
            b'.' | b',' if fraction_digits.is_none() => fraction_digits = Some(0),
            _ => return Err(()),
        }
    }
    if !any_digit {
        return Err(());
    }
    let scale = match fraction_digits {
        Some(n) => n,
        None if !item.decimal_char => item.decimals,
        None => 0,
    };
    if negative {
        mantissa = -mantissa;
    }
    Number::new(mantissa, scale)
        .with_scale(scale.max(item.decimals))
        .map(Value::Number)
        .ok_or(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const POPSTAN_DCF: &str =
        include_str!("../../fixtures/cspro/jhandley_PopstanCensus_CEN2000.dcf");
    const POPSTAN_DAT: &str = include_str!("../../fixtures/cspro/jhandley_PopstanCensus.dat");
    const POPSTAN_FIRST5: &str =
        include_str!("../../fixtures/cspro/jhandley_PopstanCensus_first5cases.dat");
    const EXPECTED_COUNTS_DCF: &str =
        include_str!("../../fixtures/cspro/jhandley_ExpectedCounts.dcf");
    const EXPECTED_COUNTS_DAT: &str =
        include_str!("../../fixtures/cspro/jhandley_ExpectedCounts.dat");
    const THREE_LEVEL_DCF: &str =
        include_str!("../../fixtures/cspro/cspro_ThreeLevelTest_HOUSEHOLD_DICT.dcf");

    fn popstan() -> Dictionary {
        Dictionary::parse(POPSTAN_DCF).unwrap()
    }

    fn read_all(dict: &Dictionary, text: &str) -> Vec<Case> {
        DatReader::new(dict, text, ReadOptions::default())
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    /// The value of `item` (with `occurrence` for repeating ones) in a record row.
    pub(crate) fn value<'c>(
        dict: &Dictionary,
        row: &'c RecordRow,
        item: &str,
        occurrence: Option<u32>,
    ) -> &'c Value {
        let record = &dict.records[row.record];
        let index = record
            .fields()
            .iter()
            .position(|f| record.item(f).name == item && f.occurrence == occurrence)
            .unwrap_or_else(|| panic!("no field {item} {occurrence:?} in {}", record.name));
        &row.values[index]
    }

    fn n(mantissa: i64) -> Value {
        Value::number(mantissa, 0)
    }

    #[test]
    fn popstan_counts() {
        let dict = popstan();
        assert!(POPSTAN_DAT.starts_with('\u{feff}'));
        let cases = read_all(&dict, POPSTAN_DAT);
        assert_eq!(cases.len(), 294);
        let count = |record: usize| {
            cases
                .iter()
                .map(|c| c.rows_of(record).count())
                .sum::<usize>()
        };
        assert_eq!(
            (count(0), count(1), count(2)),
            (1262, 240, 294),
            "PERSON, HOUSING, INTERVIEW_RECORD"
        );
        assert!(cases.iter().all(|c| c.issues.is_empty()));
        assert!(cases
            .iter()
            .enumerate()
            .all(|(i, c)| c.number == i as u64 + 1));
        let mut keys: Vec<&str> = cases.iter().map(|c| c.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 294);
        assert_eq!(
            cases.last().unwrap().records.last().unwrap().line,
            Some(1796)
        );
    }

    #[test]
    fn popstan_values() {
        let dict = popstan();
        let cases = read_all(&dict, POPSTAN_DAT);

        // Case 1, lines 1–5: three people, a housing record, an interview record.
        let first = &cases[0];
        assert_eq!(first.key, "010100300110210011");
        assert_eq!(first.first_line, Some(1));
        assert_eq!(
            first.ids,
            [n(1), n(1), n(3), n(1), n(1), n(21), n(1), n(1)],
            "PROVINCE … HH"
        );
        let persons: Vec<&RecordRow> = first.rows_of(0).collect();
        assert_eq!(persons.len(), 3);
        assert_eq!(
            persons.iter().map(|p| p.occurrence).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        let p1 = persons[0];
        assert_eq!((p1.line, p1.node), (Some(1), 1));
        assert_eq!(value(&dict, p1, "LINE", None), &n(1));
        assert_eq!(value(&dict, p1, "P03_SEX", None), &n(2));
        assert_eq!(value(&dict, p1, "P04_AGE", None), &n(19));
        // Columns 37–38 are blank: not applicable.
        assert_eq!(value(&dict, p1, "P13_LOOKING", None), &Value::Null);
        assert_eq!(value(&dict, p1, "P14_WHY_NOT", None), &Value::Null);
        // "93" and its one-digit subitem.
        assert_eq!(value(&dict, p1, "P15_OCC", None), &n(93));
        assert_eq!(value(&dict, p1, "P15A_OCC", None), &n(9));
        assert_eq!(value(&dict, p1, "P16A_IND", None), &n(2));
        // The third person's line stops at column 29: the rest is blank.
        assert_eq!(value(&dict, persons[2], "P08_RES95", None), &Value::Null);
        assert_eq!(value(&dict, persons[2], "P20_BORN12", None), &Value::Null);

        let housing = first.rows_of(1).next().unwrap();
        assert_eq!(housing.line, Some(4));
        // Zero-filled "0003".
        assert_eq!(value(&dict, housing, "H13_PERSONS", None), &n(3));
        assert_eq!(value(&dict, housing, "H07_RENT", None), &n(0));

        let interview = first.rows_of(2).next().unwrap();
        assert_eq!(
            value(&dict, interview, "INTERVIEW_DATE", None),
            &n(20001220)
        );
        assert_eq!(value(&dict, interview, "INTERVIEW_YEAR", None), &n(2000));
        assert_eq!(value(&dict, interview, "INTERVIEW_MONTH", None), &n(12));
        assert_eq!(value(&dict, interview, "INTERVIEW_DAY", None), &n(20));
        // Alpha, trailing blanks dropped.
        assert_eq!(
            value(&dict, interview, "ENUMERATOR", None),
            &Value::text("Lisa")
        );
        assert_eq!(value(&dict, interview, "INTERVIEW_RESULT", None), &n(1));

        // Line 18: housing with blank rooms and rent, twelve persons.
        let second = &cases[1];
        let housing = second.rows_of(1).next().unwrap();
        assert_eq!(housing.line, Some(18));
        assert_eq!(value(&dict, housing, "H01_TYPE", None), &n(6));
        assert_eq!(value(&dict, housing, "H05_ROOMS", None), &Value::Null);
        assert_eq!(value(&dict, housing, "H07_RENT", None), &Value::Null);
        assert_eq!(value(&dict, housing, "H13_PERSONS", None), &n(12));
        assert_eq!(second.rows_of(0).count(), 12);

        // Line 20 is a case of its own with only an interview record.
        let third = &cases[2];
        assert_eq!((third.first_line, third.records.len()), (Some(20), 1));
        assert_eq!(
            value(&dict, &third.records[0], "ENUMERATOR", None),
            &Value::text("Lisa")
        );
    }

    #[test]
    fn implied_decimals() {
        // Popstan has no item with decimals; give H13_PERSONS two implied ones and read
        // the same lines again: "0003" is now 0.03.
        let patched = POPSTAN_DCF.replace(
            "Name=H13_PERSONS\r\nStart=35\r\nLen=4\r\n",
            "Name=H13_PERSONS\r\nStart=35\r\nLen=4\r\nDecimal=2\r\n",
        );
        let patched = if patched == POPSTAN_DCF {
            POPSTAN_DCF.replace(
                "Name=H13_PERSONS\nStart=35\nLen=4\n",
                "Name=H13_PERSONS\nStart=35\nLen=4\nDecimal=2\n",
            )
        } else {
            patched
        };
        assert_ne!(patched, POPSTAN_DCF);
        let dict = Dictionary::parse(&patched).unwrap();
        let cases = read_all(&dict, POPSTAN_FIRST5);
        let persons =
            |c: &Case| value(&dict, c.rows_of(1).next().unwrap(), "H13_PERSONS", None).clone();
        assert_eq!(persons(&cases[0]), Value::number(3, 2));
        assert_eq!(persons(&cases[1]), Value::number(12, 2));
        assert_eq!(Number::new(12, 2).to_string(), "0.12");

        let dict = Dictionary::parse(
            "[Dictionary]\nName=D\nRecordTypeStart=1\nRecordTypeLen=1\n\
             [Level]\nName=L\n[IdItems]\n[Item]\nName=ID\nStart=2\nLen=1\n\
             [Record]\nName=R\nRecordTypeValue='A'\n\
             [Item]\nName=IMPLIED\nStart=3\nLen=5\nDecimal=2\n\
             [Item]\nName=MARKED\nStart=8\nLen=6\nDecimal=2\nDecimalChar=Yes\n",
        )
        .unwrap();
        let cases = read_all(
            &dict,
            "A1 1234 12.50\nA2 -123  -1.2\nA3  1.5    .5\nA412345   12.\n",
        );
        let pairs: Vec<(String, String)> = cases
            .iter()
            .map(|c| {
                let row = &c.records[0];
                let show = |v: &Value| match v {
                    Value::Number(n) => n.to_string(),
                    other => format!("{other:?}"),
                };
                (show(&row.values[0]), show(&row.values[1]))
            })
            .collect();
        assert_eq!(
            pairs,
            [
                ("12.34".into(), "12.50".into()),
                ("-1.23".into(), "-1.20".into()),
                // An explicit point is honoured even where decimals are implied.
                ("1.50".into(), "0.50".into()),
                ("123.45".into(), "12.00".into()),
            ]
        );
        assert!(cases.iter().all(|c| c.issues.is_empty()));
    }

    #[test]
    fn expected_counts_without_record_type() {
        let dict = Dictionary::parse(EXPECTED_COUNTS_DCF).unwrap();
        let cases = read_all(&dict, EXPECTED_COUNTS_DAT);
        let got: Vec<(&str, Vec<Value>, Value)> = cases
            .iter()
            .map(|c| {
                assert_eq!(c.records.len(), 1);
                (
                    c.key.as_str(),
                    c.ids.clone(),
                    c.records[0].values[0].clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("  1", vec![n(1)], n(60)),
                ("  2", vec![n(2)], n(65)),
                ("  3", vec![n(3)], n(65)),
                ("  4", vec![n(4)], n(70)),
                ("  5", vec![n(5)], n(60)),
            ]
        );
    }

    #[test]
    fn line_ends_and_bom_do_not_matter() {
        let dict = popstan();
        assert!(!POPSTAN_FIRST5.contains('\r') && !POPSTAN_FIRST5.starts_with('\u{feff}'));
        let lf = read_all(&dict, POPSTAN_FIRST5);
        assert_eq!(lf.len(), 5);
        let crlf = POPSTAN_FIRST5.replace('\n', "\r\n");
        let variants = [
            crlf.clone(),
            format!("\u{feff}{crlf}"),
            format!("\u{feff}{POPSTAN_FIRST5}"),
            POPSTAN_FIRST5.trim_end().to_string(),
            crlf.trim_end().to_string(),
        ];
        for text in &variants {
            assert_eq!(read_all(&dict, text), lf, "{:?}", &text[..8]);
        }
        // And the same as the first five cases of the full file, which has a BOM.
        let full = read_all(&dict, POPSTAN_DAT);
        assert_eq!(&full[..5], &lf[..]);
        // A file read as bytes: BOM stripped, UTF-8 kept.
        let bytes = format!("\u{feff}{crlf}").into_bytes();
        assert_eq!(read_all(&dict, &decode_text(&bytes)), lf);
    }

    #[test]
    fn a_file_is_read_as_it_comes_with_each_line_decoded() {
        let dict = popstan();
        // Through a small buffer, as a file is read: the same cases as from memory.
        let bytes = format!("\u{feff}{}", POPSTAN_FIRST5.replace('\n', "\r\n")).into_bytes();
        let streamed: Vec<Case> = DatReader::from_reader(
            &dict,
            std::io::BufReader::with_capacity(7, &bytes[..]),
            ReadOptions::default(),
        )
        .collect::<Result<_, _>>()
        .unwrap();
        assert_eq!(streamed, read_all(&dict, POPSTAN_FIRST5));

        // A UTF-8 line, then an ANSI one: each is read as what it is, and from the first
        // line that is not UTF-8 on, the file is taken for Windows-1252.
        let mut bytes = "301010030011021001120001220Hélène              1\n"
            .as_bytes()
            .to_vec();
        bytes.extend_from_slice(b"301010030011021001220001220C\x9cur \xc3\xa9             1\n");
        let cases: Vec<Case> = DatReader::from_reader(&dict, &bytes[..], ReadOptions::default())
            .collect::<Result<_, _>>()
            .unwrap();
        let names: Vec<&Value> = cases
            .iter()
            .map(|c| value(&dict, &c.records[0], "ENUMERATOR", None))
            .collect();
        assert_eq!(names, [&Value::text("Hélène"), &Value::text("Cœur Ã©")]);
    }

    #[test]
    fn what_no_cspro_file_holds_stops_the_reading() {
        let dict = popstan();
        // One endless line (a device copied into a file, say): refused once over the limit.
        let endless = std::io::repeat(b'0').take(2 * MAX_LINE_BYTES as u64);
        let mut reader = DatReader::from_reader(
            &dict,
            std::io::BufReader::new(endless),
            ReadOptions::default(),
        );
        assert_eq!(
            reader.next(),
            Some(Err(DataError::LineTooLong {
                line: 1,
                limit: MAX_LINE_BYTES
            }))
        );
        assert_eq!(reader.next(), None);

        // Lines that never make a case: refused once they would make one too large.
        let mut noise = Vec::new();
        while noise.len() <= MAX_CASE_BYTES {
            noise.extend_from_slice(b"hello world\n");
        }
        let mut reader = DatReader::from_reader(&dict, &noise[..], ReadOptions::default());
        assert!(matches!(
            reader.next(),
            Some(Err(DataError::CaseTooLarge { .. }))
        ));

        // One case whose lines never end: the same.
        let line = POPSTAN_FIRST5.lines().next().unwrap();
        let mut one_case = String::new();
        while one_case.len() <= MAX_CASE_BYTES {
            one_case.push_str(line);
            one_case.push('\n');
        }
        let mut reader = DatReader::new(&dict, &one_case, ReadOptions::default());
        match reader.next() {
            Some(Err(DataError::CaseTooLarge { case_key, .. })) => {
                assert_eq!(case_key, "010100300110210011")
            }
            other => panic!("{other:?}"),
        }
        // A file of ordinary cases is not affected.
        assert_eq!(read_all(&dict, POPSTAN_DAT).len(), 294);
    }

    #[test]
    fn bad_lines_are_reported_and_the_rest_is_read() {
        let dict = popstan();
        let lines = [
            // 1: ends inside the ids, before any case: it goes to the first case
            "1",
            // 2: case A, person 1
            "101010030011021001101121951010121111  93292100000",
            // 3: unknown record type with case A's ids
            "901010030011021001101121951010121111",
            // 4: ends inside the ids
            "1010100300110",
            // 5: person 2 with "2x" as age
            "101010030011021001102522x5101011049",
            // 6: case A housing
            "20101003001102100111123021000522150003",
            // 7: case A, a second housing record
            "20101003001102100111123021000522150004",
            // 8: case B, untouched
            "301010030011087002120001215Bart                1",
        ];
        let text = lines.join("\n");
        let cases = read_all(&dict, &text);
        assert_eq!(cases.len(), 2);

        let a = &cases[0];
        let kinds: Vec<(Option<usize>, &IssueKind)> =
            a.issues.iter().map(|i| (i.line, &i.kind)).collect();
        assert_eq!(
            kinds,
            [
                (Some(1), &IssueKind::ShortLine),
                (Some(3), &IssueKind::UnknownRecordType),
                (Some(4), &IssueKind::ShortLine),
                (
                    Some(5),
                    &IssueKind::NotNumeric {
                        item: "P04_AGE".into()
                    }
                ),
                (
                    Some(7),
                    &IssueKind::TooManyOccurrences {
                        record: "HOUSING".into()
                    }
                ),
            ]
        );
        assert!(a.issues[1].detail.contains("\"9\""), "{}", a.issues[1]);
        assert_eq!(
            a.issues[3].to_string(),
            "line 5: P04_AGE is not numeric: P04_AGE holds \"2x\""
        );
        // Lines 2, 5, 6 and 7 were read; on line 5 only the age is lost.
        let read: Vec<Option<usize>> = a.records.iter().map(|r| r.line).collect();
        assert_eq!(read, [Some(2), Some(5), Some(6), Some(7)]);
        let p2 = &a.records[1];
        assert_eq!(p2.occurrence, 2);
        assert_eq!(value(&dict, p2, "P04_AGE", None), &Value::Null);
        assert_eq!(value(&dict, p2, "P03_SEX", None), &n(2));
        assert_eq!(value(&dict, p2, "P07_BIRTH", None), &n(1));
        let housing: Vec<u32> = a.rows_of(1).map(|r| r.occurrence).collect();
        assert_eq!(housing, [1, 2]);

        let b = &cases[1];
        assert!(b.issues.is_empty());
        assert_eq!((b.number, b.first_line), (2, Some(8)));
        assert_eq!(
            value(&dict, &b.records[0], "ENUMERATOR", None),
            &Value::text("Bart")
        );

        // Strict: the first case with an issue stops the reading.
        let mut strict = DatReader::new(&dict, &text, ReadOptions { strict: true });
        match strict.next() {
            Some(Err(DataError::Strict { case_key, issue })) => {
                assert_eq!(case_key, "010100300110210011");
                assert_eq!((issue.line, issue.kind), (Some(1), IssueKind::ShortLine));
            }
            other => panic!("{other:?}"),
        }
        assert!(strict.next().is_none());
        // Strict on clean data reads everything.
        let clean = DatReader::new(&dict, POPSTAN_FIRST5, ReadOptions { strict: true });
        assert_eq!(clean.count(), 5);

        // Nothing readable at all is an error, not an empty success.
        let mut garbage = DatReader::new(&dict, "hello\nworld\n", ReadOptions::default());
        assert!(matches!(
            garbage.next(),
            Some(Err(DataError::NoCase { issue })) if issue.line == Some(1)
        ));
    }

    #[test]
    fn positions_count_characters_and_asterisks_are_default() {
        let dict = popstan();
        // "Hélène" has two 2-byte characters: the result code must still be at column 48.
        let line = "301010030011021001120001220Hélène              1";
        assert_eq!(line.chars().count(), 48);
        let cases = read_all(&dict, line);
        let row = &cases[0].records[0];
        assert_eq!(
            value(&dict, row, "ENUMERATOR", None),
            &Value::text("Hélène")
        );
        assert_eq!(value(&dict, row, "INTERVIEW_RESULT", None), &n(1));

        // The same line from an older, ANSI file.
        let ansi = b"301010030011021001120001220H\xe9l\xe8ne C\x9cur         1";
        let text = decode_text(ansi);
        let cases = read_all(&dict, &text);
        let row = &cases[0].records[0];
        assert_eq!(
            value(&dict, row, "ENUMERATOR", None),
            &Value::text("Hélène Cœur")
        );
        assert_eq!(value(&dict, row, "INTERVIEW_RESULT", None), &n(1));

        // A stray asterisk is not a number…
        let cases = read_all(&dict, "20101003001102100111123021000522150***");
        let housing = &cases[0].records[0];
        assert_eq!(value(&dict, housing, "H13_PERSONS", None), &Value::Null);
        assert_eq!(
            cases[0].issues[0].kind,
            IssueKind::NotNumeric {
                item: "H13_PERSONS".into()
            }
        );
        // …a field of asterisks is CSPro's DEFAULT.
        let cases = read_all(&dict, "2010100300110210011112302100052215****");
        let housing = &cases[0].records[0];
        assert_eq!(
            value(&dict, housing, "H13_PERSONS", None),
            &Value::Special(Special::Default)
        );
        assert!(cases[0].issues.is_empty());
    }

    /// The three-level case of the `.csdb` fixture written out as text lines.
    pub(crate) fn three_level_lines() -> String {
        let key = "01010010011 1";
        // Record type, key, housing unit and household numbers, then the items.
        let compound = format!(
            "2{key}   {:>15}{:>15}{}",
            "234.00000", "234234.56700", "01020304051"
        );
        let unit = format!("3{key} 1 11111");
        let household = format!("1{key} 11{}", "1123432120001");
        let items = [
            "1", "8", "02000101", "99", "1", "2", "03", "03", "2", "  ", "1", "2", "1", "2", "01",
            "  ", " ", " ", "  ", "  ", " ", "12*4", "  2 ", "2",
        ];
        let person = format!("4{key} 11{:<50}{:<50}{}", "newdude", "", items.concat());
        [compound, unit, household, person].join("\r\n")
    }

    #[test]
    fn three_levels_in_text() {
        let dict = Dictionary::parse(THREE_LEVEL_DCF).unwrap();
        let mut text = three_level_lines();
        // A second household in the same housing unit, with one person.
        text.push_str("\r\n101010010011 1 12\r\n401010010011 1 12Ann");
        let cases = read_all(&dict, &text);
        assert_eq!(cases.len(), 1);
        let case = &cases[0];
        assert!(case.issues.is_empty(), "{:?}", case.issues);
        assert_eq!(case.key, "01010010011 1");
        assert_eq!(case.ids[2], Value::text("001"));
        let shape: Vec<(&str, u32, Vec<Value>, u32)> = case
            .records
            .iter()
            .map(|r| {
                (
                    dict.records[r.record].name.as_str(),
                    r.node,
                    r.level_ids.clone(),
                    r.occurrence,
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("COMPOUND_INFO_REC", 1, vec![], 1),
                ("HOUSING_UNIT_REC", 1, vec![n(1)], 1),
                ("HOUSEHOLD_REC", 1, vec![n(1), n(1)], 1),
                ("PERSON_REC", 1, vec![n(1), n(1)], 1),
                ("HOUSEHOLD_REC", 2, vec![n(1), n(2)], 1),
                ("PERSON_REC", 2, vec![n(1), n(2)], 1),
            ]
        );
        let compound = &case.records[0];
        assert_eq!(
            value(&dict, compound, "LATITUDE", None),
            &Value::number(23_400_000, 5)
        );
        assert_eq!(
            value(&dict, compound, "LONGITUDE", None),
            &Value::number(23_423_456_700, 5)
        );
        assert_eq!(value(&dict, compound, "HOUSING_UNITS", Some(4)), &n(4));
        let person = &case.records[3];
        assert_eq!(
            value(&dict, person, "FIRST_NAME", None),
            &Value::text("newdude")
        );
        assert_eq!(value(&dict, person, "LAST_NAME", None), &Value::Null);
        assert_eq!(value(&dict, person, "P04_DOB", None), &n(2_000_101));
        assert_eq!(value(&dict, person, "P04DOB_YEAR", None), &n(200));
        assert_eq!(value(&dict, person, "REPEATING_SUBITEM", Some(2)), &n(2));
        assert_eq!(
            value(&dict, person, "REPEATING_SUBITEM", Some(3)),
            &Value::Special(Special::Default)
        );
        assert_eq!(value(&dict, person, "NOT_REPEATING_SUBITEM", None), &n(4));
        assert_eq!(
            value(&dict, person, "REPEATING_PARENT", Some(1)),
            &Value::Null
        );
        assert_eq!(
            value(&dict, person, "REPEATING_PARENT", Some(2)),
            &Value::text("2")
        );
        assert_eq!(value(&dict, person, "SUB_ONE", Some(2)), &n(2));
        assert_eq!(value(&dict, person, "SUB_TWO", Some(2)), &Value::Null);
        assert_eq!(value(&dict, person, "P25_MORE", None), &n(2));
        assert_eq!(
            value(&dict, &case.records[5], "FIRST_NAME", None),
            &Value::text("Ann")
        );
    }

    #[test]
    fn numbers_print_exactly() {
        assert_eq!(Number::new(-5, 2).to_string(), "-0.05");
        assert_eq!(Number::new(123_456, 3).to_string(), "123.456");
        assert_eq!(Number::new(-42, 0).to_string(), "-42");
        assert_eq!(Number::new(1200, 2).as_i64(), Some(12));
        assert_eq!(Number::new(1234, 2).as_i64(), None);
        assert_eq!(
            Number::from_f64(234234.567, 5),
            Some(Number::new(23_423_456_700, 5))
        );
        assert_eq!(Number::from_f64(1e52, 0), None);
        assert_eq!(Number::new(i64::MAX, 0).with_scale(1), None);
    }
}
