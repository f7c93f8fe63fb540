//! wechatpay: being written.
