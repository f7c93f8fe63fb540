//! wechatpay gateway simulator: being written.
