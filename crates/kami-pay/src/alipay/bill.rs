//! `bill` for Alipay (protocols.md A.5): `alipay.data.dataservice.bill.downloadurl.query`
//! (`bill_type=trade`, `bill_date=yyyy-MM-dd`), signed and verified like every call; the
//! answer `isp.bill_not_exist` means nothing happened that day (an empty bill). The
//! `bill_download_url` (valid for seconds) is fetched with a plain GET, bounded in size and
//! time, and the archive is read by [`super::bill_file`] off the async threads.

use std::time::Duration;

use serde_json::json;

use super::api::ApiError;
use super::bill_file::{parse_trade_bill_zip, ZIP_LIMITS};
use super::wire::required_str;
use super::AlipayChannel;
use crate::common::bill_text::{bill_date, download, malformed};
use crate::{Bill, BillDay, PayError};

pub(super) const BILL_METHOD: &str = "alipay.data.dataservice.bill.downloadurl.query";
/// The sub code of "no bill for that day".
pub const NO_BILL: &str = "isp.bill_not_exist";
/// Whole download of the archive.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

impl AlipayChannel {
    pub(super) async fn fetch_bill(&self, day: BillDay) -> Result<Bill, PayError> {
        let biz = json!({ "bill_type": "trade", "bill_date": bill_date(day) });
        let map = match self.call(BILL_METHOD, &biz, &[]).await? {
            Ok(map) => map,
            Err(e) if e.is(NO_BILL) => return Ok(Bill::empty(day)),
            Err(e) => return Err(ApiError::into_pay_error(e)),
        };
        let url = url::Url::parse(required_str(&map, "bill_download_url")?)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| malformed("bill_download_url is not an http(s) URL"))?;
        let zip = download(self.http.get(url).timeout(DOWNLOAD_TIMEOUT)).await?;
        let pid = self.cfg.seller_id.clone().filter(|p| !p.is_empty());
        tokio::task::spawn_blocking(move || {
            parse_trade_bill_zip(day, &zip, pid.as_deref(), &ZIP_LIMITS)
        })
        .await
        .map_err(|_| malformed("bill parsing stopped"))?
    }
}
