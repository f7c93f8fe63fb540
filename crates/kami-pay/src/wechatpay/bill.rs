//! `bill` for WeChat Pay v3 (protocols.md B.4): `GET /v3/bill/tradebill?bill_date=…&bill_type=ALL`,
//! signed and verified like every call, answers `{hash_type, hash_value, download_url}`
//! (`400 NO_STATEMENT_EXIST`: nothing that day, an empty bill). The file is fetched with a
//! signed GET of `download_url`; its answer is NOT signed, so the file must hash (SHA1) to
//! `hash_value` or it is refused. [`super::bill_file`] reads it off the async threads.

use std::time::Duration;

use aws_lc_rs::digest;
use serde::Deserialize;

use super::bill_file::parse_trade_bill;
use super::wire::json;
use super::WechatPayChannel;
use crate::common::bill_text::{bill_date, download, malformed};
use crate::{Bill, BillDay, PayError};

/// The error code of "no bill for that day".
pub const NO_BILL: &str = "NO_STATEMENT_EXIST";
/// Whole download of the file.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize)]
struct BillAnswer {
    hash_type: String,
    hash_value: String,
    download_url: String,
}

/// Lowercase hex SHA1 of a bill file (the `hash_value` of `hash_type` `SHA1`).
pub fn sha1_hex(file: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, file))
}

/// `file` hashes to `hash_value` under `hash_type` (only SHA1 exists).
pub(super) fn check_hash(hash_type: &str, hash_value: &str, file: &[u8]) -> Result<(), PayError> {
    if !hash_type.eq_ignore_ascii_case("SHA1") {
        return Err(malformed(format!(
            "bill hash_type {} is not SHA1",
            crate::common::text::clip(hash_type, 16)
        )));
    }
    let got = sha1_hex(file);
    if !got.eq_ignore_ascii_case(hash_value.trim()) {
        return Err(malformed(
            "bill file does not match the SHA1 hash_value of the bill answer",
        ));
    }
    Ok(())
}

impl WechatPayChannel {
    pub(super) async fn fetch_bill(&self, day: BillDay) -> Result<Bill, PayError> {
        let path = format!(
            "/v3/bill/tradebill?bill_date={}&bill_type=ALL",
            bill_date(day)
        );
        let a = match self.call(reqwest::Method::GET, &path, None).await {
            Ok(a) => a,
            Err(PayError::Gateway { code, .. }) if code == NO_BILL => return Ok(Bill::empty(day)),
            Err(e) => return Err(e),
        };
        let answer: BillAnswer = json(&a.body, "bill answer")?;
        let url = url::Url::parse(&answer.download_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| malformed("download_url is not an http(s) URL"))?;
        let req = self
            .signed(reqwest::Method::GET, url, None)?
            .timeout(DOWNLOAD_TIMEOUT);
        let file = download(req).await?;
        check_hash(&answer.hash_type, &answer.hash_value, &file)?;
        let mchid = self.cfg.mchid.clone();
        tokio::task::spawn_blocking(move || parse_trade_bill(day, &file, &mchid))
            .await
            .map_err(|_| malformed("bill parsing stopped"))?
    }
}
