//! Storefront page tests over real HTTP: snapshots of every page in both languages, HTML
//! escaping of every user- or seller-provided field, and the pages' behaviour (prices charged,
//! limits, stock, lookup, tokens and cookies, in-app browsers, languages, headers, themes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod buying;
mod escaping;
mod hardening;
mod headers_and_language;
mod lookup;
mod order_access;
mod render;
mod theme_dir;
// Settings (issue 10 parts 8 and 10).
mod settings;
