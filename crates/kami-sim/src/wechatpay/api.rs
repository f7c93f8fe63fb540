//! The WeChat Pay v3 merchant API of the simulator: Native and H5 order creation, queries by
//! `out_trade_no` or `transaction_id`, close, refunds and refund queries. Every request is
//! authenticated (B.1) and every answer signed (B.2) by [`super::wire`].

use axum::body::Bytes;
use axum::extract::{FromRequest, OriginalUri, Path, Request, State};
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use kami_pay::wechatpay::{parse_rfc3339, valid_out_refund_no, valid_out_trade_no};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

use super::{random_alnum, random_digits, Inner, Kind, NotifyStats, Refund, Trade, WechatSim};
use super::{CODE_URL_PREFIX, PREFIX};

/// Largest body read before authentication refuses it (which it does past 64 KiB).
const READ_LIMIT: usize = 2 * 1024 * 1024;

/// An API call as its signature covers it: method, path and query as received, headers,
/// body.
pub(super) struct ApiCall {
    pub(super) method: HttpMethod,
    pub(super) uri: Uri,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for ApiCall {
    type Rejection = Response;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let uri = req
            .extensions()
            .get::<OriginalUri>()
            .map_or_else(|| req.uri().clone(), |o| o.0.clone());
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, READ_LIMIT)
            .await
            .map_err(|e| (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response())?;
        Ok(ApiCall {
            method: parts.method,
            uri,
            headers: parts.headers,
            body,
        })
    }
}

/// Order creation request (B.4); loose types so bad values get WeChat-style errors.
#[derive(Debug, Deserialize)]
struct OrderReq {
    appid: Option<String>,
    mchid: Option<String>,
    description: Option<String>,
    out_trade_no: Option<String>,
    time_expire: Option<String>,
    notify_url: Option<String>,
    amount: Option<OrderAmount>,
    scene_info: Option<SceneInfo>,
    payer: Option<PayerReq>,
}

#[derive(Debug, Deserialize)]
struct PayerReq {
    openid: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OrderAmount {
    total: Option<i64>,
    currency: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SceneInfo {
    payer_client_ip: Option<String>,
    h5_info: Option<H5Info>,
}

#[derive(Debug, Deserialize)]
struct H5Info {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CloseReq {
    mchid: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RefundReq {
    transaction_id: Option<String>,
    out_trade_no: Option<String>,
    out_refund_no: Option<String>,
    amount: Option<RefundAmount>,
}

#[derive(Debug, Deserialize)]
struct RefundAmount {
    refund: Option<i64>,
    total: Option<i64>,
    currency: Option<String>,
}

pub(super) type ApiResult = Result<Response, Box<Response>>;

impl WechatSim {
    async fn create(&self, kind: Kind, call: ApiCall) -> ApiResult {
        let ApiCall {
            method,
            uri,
            headers,
            body,
        } = call;
        self.authenticate(&method, &uri, &headers, &body)?;
        let creation = self.controls().creation.next("系统错误 (simulated)");
        if let Err(m) = creation.apply().await {
            return Err(self.error(StatusCode::INTERNAL_SERVER_ERROR, "SYSTEM_ERROR", &m));
        }
        let req: OrderReq = self.parse_json(&body)?;
        let param = |m: &str| self.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", m);
        if req.appid.as_deref() != Some(self.cfg.appid.as_str()) {
            return Err(self.error(
                StatusCode::BAD_REQUEST,
                "APPID_MCHID_NOT_MATCH",
                "appid and mchid do not match",
            ));
        }
        self.check_mchid(req.mchid.as_deref())?;
        let description = req.description.unwrap_or_default();
        let n = description.chars().count();
        if n == 0 || n > 127 {
            return Err(param("description must be 1-127 characters"));
        }
        let out_trade_no = req.out_trade_no.unwrap_or_default();
        if !valid_out_trade_no(&out_trade_no) {
            return Err(param("out_trade_no must be 6-32 of [0-9A-Za-z_-|*]"));
        }
        let notify_url = req.notify_url.unwrap_or_default();
        if !(notify_url.starts_with("https://") || notify_url.starts_with("http://"))
            || notify_url.contains('?')
            || notify_url.len() > 255
        {
            return Err(param(
                "notify_url must be an absolute URL without a query string",
            ));
        }
        let amount = req.amount.ok_or_else(|| param("amount is missing"))?;
        let total = amount
            .total
            .filter(|t| *t >= 1)
            .ok_or_else(|| param("amount.total must be a positive integer (fen)"))?;
        if amount.currency.as_deref().is_some_and(|c| c != "CNY") {
            return Err(param("amount.currency must be CNY"));
        }
        let time_expire = match req.time_expire.as_deref() {
            None => None,
            Some(s) => Some(parse_rfc3339(s).ok_or_else(|| {
                param("time_expire must be RFC 3339 (yyyy-MM-DDTHH:mm:ss+TIMEZONE)")
            })?),
        };
        if kind == Kind::H5 {
            let scene = req
                .scene_info
                .ok_or_else(|| param("scene_info is required for H5"))?;
            if scene.payer_client_ip.as_deref().is_none_or(str::is_empty) {
                return Err(param("scene_info.payer_client_ip is required"));
            }
            let t = scene.h5_info.and_then(|h| h.kind);
            if !matches!(t.as_deref(), Some("Wap" | "iOS" | "Android")) {
                return Err(param("scene_info.h5_info.type must be Wap, iOS or Android"));
            }
        }
        let payer_openid = if kind == Kind::Jsapi {
            let openid = req
                .payer
                .and_then(|p| p.openid)
                .filter(|o| !o.is_empty())
                .ok_or_else(|| param("payer.openid is required for JSAPI"))?;
            if !self.lock().oauth.issued(&openid) {
                return Err(param(
                    "openid is not a user of this appid (openid和appid不匹配)",
                ));
            }
            Some(openid)
        } else {
            None
        };
        let base = self.public_base(&headers);
        let mut inner = self.lock();
        let url = if let Some(t) = inner.trades.get(&out_trade_no) {
            match t.state {
                "SUCCESS" | "REFUND" => {
                    return Err(self.error(StatusCode::BAD_REQUEST, "ORDERPAID", "该订单已支付"))
                }
                "CLOSED" | "REVOKED" => {
                    return Err(self.error(StatusCode::BAD_REQUEST, "ORDER_CLOSED", "该订单已关闭"))
                }
                _ => {}
            }
            if t.kind != kind
                || t.total != total
                || t.description != description
                || t.notify_url != notify_url
                || t.payer_openid != payer_openid
            {
                return Err(self.error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "out_trade_no was already used with different parameters",
                ));
            }
            t.url.clone()
        } else {
            let token = match kind {
                Kind::Jsapi => format!("wx{}", random_alnum(34)),
                _ => random_alnum(16),
            };
            let url = match kind {
                Kind::Native => format!("{CODE_URL_PREFIX}{token}"),
                Kind::H5 => format!("{base}{PREFIX}/h5/{token}"),
                Kind::Jsapi => token.clone(),
            };
            inner.tokens.insert(token.clone(), out_trade_no.clone());
            inner.trades.insert(
                out_trade_no.clone(),
                Trade {
                    out_trade_no,
                    kind,
                    description,
                    notify_url,
                    total,
                    time_expire,
                    url: url.clone(),
                    state: "NOTPAY",
                    paid: None,
                    refund_reserved: 0,
                    stats: NotifyStats::default(),
                    payer_openid,
                },
            );
            url
        };
        drop(inner);
        let body = match kind {
            Kind::Native => json!({ "code_url": url }),
            Kind::H5 => json!({ "h5_url": url }),
            Kind::Jsapi => json!({ "prepay_id": url }),
        };
        Ok(self.answer(StatusCode::OK, Some(&body)))
    }

    async fn query(&self, by_id: bool, key: String, call: ApiCall) -> ApiResult {
        self.authenticate(&call.method, &call.uri, &call.headers, b"")?;
        if self.controls().fail_queries {
            return Err(self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SYSTEM_ERROR",
                "系统错误 (simulated)",
            ));
        }
        let query = call.uri.query();
        let params: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
            .map_err(|_| self.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "bad query string"))?;
        let mchid = params
            .iter()
            .find(|(k, _)| k == "mchid")
            .map(|(_, v)| v.as_str());
        self.check_mchid(mchid)?;
        let inner = self.lock();
        let trade = if by_id {
            inner
                .trades
                .values()
                .find(|t| t.paid.as_ref().is_some_and(|p| p.transaction_id == key))
        } else {
            inner.trades.get(&key)
        };
        match trade {
            Some(t) => {
                let v = self.transaction_json(t);
                drop(inner);
                Ok(self.answer(StatusCode::OK, Some(&v)))
            }
            None => Err(self.error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在")),
        }
    }

    async fn close(&self, no: String, call: ApiCall) -> ApiResult {
        self.authenticate(&call.method, &call.uri, &call.headers, &call.body)?;
        let req: CloseReq = self.parse_json(&call.body)?;
        self.check_mchid(req.mchid.as_deref())?;
        let mut inner = self.lock();
        match inner.trades.get_mut(&no) {
            None => Err(self.error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在")),
            Some(t) if matches!(t.state, "SUCCESS" | "REFUND") => {
                Err(self.error(StatusCode::BAD_REQUEST, "ORDERPAID", "该订单已支付"))
            }
            Some(t) => {
                t.state = "CLOSED";
                drop(inner);
                Ok(self.answer(StatusCode::NO_CONTENT, None))
            }
        }
    }

    /// Advance a processing refund by one look; settle it when its countdown ends.
    fn observe_refund(inner: &mut Inner, out_refund_no: &str, now_secs: i64) {
        let Some(r) = inner.refunds.get_mut(out_refund_no) else {
            return;
        };
        if r.status != "PROCESSING" {
            return;
        }
        r.countdown = r.countdown.saturating_sub(1);
        if r.countdown == 0 {
            Self::settle_refund(inner, out_refund_no, now_secs);
        }
    }

    fn settle_refund(inner: &mut Inner, out_refund_no: &str, now_secs: i64) {
        let Some(r) = inner.refunds.get_mut(out_refund_no) else {
            return;
        };
        r.status = "SUCCESS";
        r.success_time = Some(now_secs);
        let trade_no = r.out_trade_no.clone();
        if let Some(t) = inner.trades.get_mut(&trade_no) {
            t.state = "REFUND";
        }
    }

    async fn refund(&self, call: ApiCall) -> ApiResult {
        self.authenticate(&call.method, &call.uri, &call.headers, &call.body)?;
        let req: RefundReq = self.parse_json(&call.body)?;
        let param = |m: &str| self.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", m);
        let out_refund_no = req.out_refund_no.unwrap_or_default();
        if !valid_out_refund_no(&out_refund_no) {
            return Err(param("out_refund_no must be 1-64 of [0-9A-Za-z_-|*@]"));
        }
        let amount = req.amount.ok_or_else(|| param("amount is missing"))?;
        let refund = amount
            .refund
            .filter(|r| *r >= 1)
            .ok_or_else(|| param("amount.refund must be a positive integer (fen)"))?;
        let total = amount
            .total
            .ok_or_else(|| param("amount.total is missing"))?;
        if amount.currency.as_deref() != Some("CNY") {
            return Err(param("amount.currency must be CNY"));
        }
        let mut inner = self.lock();
        let trade_no = match (&req.out_trade_no, &req.transaction_id) {
            (Some(no), _) => inner.trades.get(no).map(|t| t.out_trade_no.clone()),
            (None, Some(id)) => inner
                .trades
                .values()
                .find(|t| t.paid.as_ref().is_some_and(|p| &p.transaction_id == id))
                .map(|t| t.out_trade_no.clone()),
            (None, None) => return Err(param("out_trade_no or transaction_id is required")),
        };
        let Some(trade_no) = trade_no else {
            return Err(self.error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "订单不存在"));
        };
        if let Some(existing) = inner.refunds.get(&out_refund_no) {
            if existing.out_trade_no != trade_no || existing.amount != refund {
                return Err(self.error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "out_refund_no was already used with different parameters",
                ));
            }
            Self::observe_refund(&mut inner, &out_refund_no, self.clock.now_secs());
        } else {
            let polls = self.controls().refund_polls;
            let Some(t) = inner.trades.get_mut(&trade_no) else {
                return Err(self.error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "订单不存在"));
            };
            let Some(paid_total) = t.paid.as_ref().map(|p| p.total) else {
                return Err(self.error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "订单未支付 (the trade is not paid)",
                ));
            };
            if total != paid_total {
                return Err(param("amount.total differs from the paid total"));
            }
            if t.refund_reserved + refund > paid_total {
                return Err(self.error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "申请退款金额超过订单可退金额 (refunds would exceed the paid total)",
                ));
            }
            t.refund_reserved += refund;
            inner.refunds.insert(
                out_refund_no.clone(),
                Refund {
                    refund_id: format!("50{}", random_digits(27)),
                    out_refund_no: out_refund_no.clone(),
                    out_trade_no: trade_no.clone(),
                    amount: refund,
                    status: "PROCESSING",
                    countdown: polls,
                    create_time: self.clock.now_secs(),
                    success_time: None,
                },
            );
            if polls == 0 {
                Self::settle_refund(&mut inner, &out_refund_no, self.clock.now_secs());
            }
        }
        let v = match inner.refunds.get(&out_refund_no) {
            Some(r) => self.refund_json(r, inner.trades.get(&trade_no)),
            None => {
                return Err(self.error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "SYSTEM_ERROR",
                    "lost refund",
                ))
            }
        };
        drop(inner);
        Ok(self.answer(StatusCode::OK, Some(&v)))
    }

    async fn refund_query(&self, no: String, call: ApiCall) -> ApiResult {
        self.authenticate(&call.method, &call.uri, &call.headers, b"")?;
        let mut inner = self.lock();
        Self::observe_refund(&mut inner, &no, self.clock.now_secs());
        let v = match inner.refunds.get(&no) {
            Some(r) => self.refund_json(r, inner.trades.get(&r.out_trade_no)),
            None => {
                return Err(self.error(
                    StatusCode::NOT_FOUND,
                    "RESOURCE_NOT_EXISTS",
                    "退款单不存在",
                ))
            }
        };
        drop(inner);
        Ok(self.answer(StatusCode::OK, Some(&v)))
    }
}

pub(super) fn flatten(r: ApiResult) -> Response {
    r.unwrap_or_else(|e| *e)
}

pub(super) async fn api_native(State(sim): State<Arc<WechatSim>>, call: ApiCall) -> Response {
    flatten(sim.create(Kind::Native, call).await)
}

pub(super) async fn api_h5(State(sim): State<Arc<WechatSim>>, call: ApiCall) -> Response {
    flatten(sim.create(Kind::H5, call).await)
}

pub(super) async fn api_jsapi(State(sim): State<Arc<WechatSim>>, call: ApiCall) -> Response {
    flatten(sim.create(Kind::Jsapi, call).await)
}

pub(super) async fn api_query_out_trade_no(
    State(sim): State<Arc<WechatSim>>,
    Path(no): Path<String>,
    call: ApiCall,
) -> Response {
    flatten(sim.query(false, no, call).await)
}

pub(super) async fn api_query_transaction_id(
    State(sim): State<Arc<WechatSim>>,
    Path(id): Path<String>,
    call: ApiCall,
) -> Response {
    flatten(sim.query(true, id, call).await)
}

pub(super) async fn api_close(
    State(sim): State<Arc<WechatSim>>,
    Path(no): Path<String>,
    call: ApiCall,
) -> Response {
    flatten(sim.close(no, call).await)
}

pub(super) async fn api_refund(State(sim): State<Arc<WechatSim>>, call: ApiCall) -> Response {
    flatten(sim.refund(call).await)
}

pub(super) async fn api_refund_query(
    State(sim): State<Arc<WechatSim>>,
    Path(no): Path<String>,
    call: ApiCall,
) -> Response {
    flatten(sim.refund_query(no, call).await)
}
