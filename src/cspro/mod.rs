//! CSPro survey data: dictionaries, data files and the plan of the tables a breakout
//! writes them into. Pure parsing and planning (the `.csdb` reader only reads), so the
//! breakout operation and its store can be tested and timed apart from it.
//!
//! The pieces, in the order a breakout uses them:
//! - [`dictionary`]: the `.dcf`, text or JSON form, with every position resolved;
//! - [`data`]: fixed-width `.dat` text grouped into [`data::Case`]s, with bad lines kept
//!   as per-case [`data::Issue`]s instead of aborting the file;
//! - [`csdb`]: the same `Case`s from a CSPro SQLite data file;
//! - [`layout`]: the tables, columns and keys a dictionary breaks out into, and each
//!   case's rows in that column order.

pub mod csdb;
pub mod data;
pub mod dictionary;
pub mod layout;
