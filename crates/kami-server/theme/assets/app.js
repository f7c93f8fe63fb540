// kami page script: running total, payment countdown, live order updates, copy buttons.
// Every page works without it; nothing here talks to anything but this shop.
(function () {
  "use strict";
  var $ = function (sel, root) { return (root || document).querySelector(sel); };

  // ---- product page: the total the server will charge (same tiers, same limits) ----
  var form = $('[data-testid="order-form"]');
  if (form) {
    var qty = form.querySelector('input[name="quantity"]');
    var out = $('[data-testid="total"]');
    var unit = parseInt(form.getAttribute("data-unit"), 10);
    var tiers = (form.getAttribute("data-tiers") || "").split(",").filter(Boolean).map(function (t) {
      var p = t.split(":"); return [parseInt(p[0], 10), parseInt(p[1], 10)];
    });
    var cur = form.getAttribute("data-currency");
    var sym = { CNY: "¥", USD: "$", EUR: "€", HKD: "HK$" }[cur];
    var exp = parseInt(form.getAttribute("data-exp") || "2", 10);
    var fmt = function (minor) {
      var s = (minor / Math.pow(10, exp)).toFixed(exp);
      return sym ? sym + s : s + " " + cur;
    };
    var update = function () {
      var n = parseInt(qty.value, 10);
      var min = parseInt(qty.min, 10), max = parseInt(qty.max, 10);
      if (!(n >= min && n <= max)) { out.textContent = "—"; return; }
      var u = unit;
      tiers.forEach(function (t) { if (n >= t[0]) u = t[1]; });
      out.textContent = fmt(u * n);
    };
    if (qty && out) { qty.addEventListener("input", update); update(); }
    form.addEventListener("submit", function () {
      var b = form.querySelector('button[type="submit"]');
      if (b) setTimeout(function () { b.disabled = true; }, 0);
    });
  }

  // ---- checkout / order page ----
  var timer = null;
  var startCountdown = function () {
    var el = $('[data-testid="countdown"]');
    if (timer) clearInterval(timer);
    if (!el) return;
    var end = Date.now() + parseInt(el.getAttribute("data-remaining"), 10) * 1000;
    var tick = function () {
      var s = Math.max(0, Math.round((end - Date.now()) / 1000));
      el.textContent = Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2);
    };
    tick();
    timer = setInterval(tick, 1000);
  };
  startCountdown();

  var box = document.getElementById("order");
  var poll = box && box.getAttribute("data-poll");
  if (poll) {
    var delay = 0;
    var follow = function () {
      var st = $('[data-testid="order-status"]', box);
      var since = st ? st.getAttribute("data-status") : "pending";
      fetch(poll + "&since=" + encodeURIComponent(since), { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
        .then(function (html) {
          delay = 0;
          box.innerHTML = html;
          startCountdown();
          var now = $('[data-testid="order-status"]', box);
          var s = now && now.getAttribute("data-status");
          if (s === "pending" || s === "paid") follow();
        })
        .catch(function () {
          delay = Math.min(delay ? delay * 2 : 1000, 15000);
          setTimeout(follow, delay);
        });
    };
    follow();
  }

  // ---- WeChat JSAPI: hand the prepared payment to the wallet (inside WeChat) ----
  // The callback only tells the buyer what WeChat said; the order page keeps following the
  // order, which becomes paid from the gateway's verified notification alone.
  var wxPay = function () {
    var b = $('[data-testid="jsapi-pay"]');
    if (!b || !window.WeixinJSBridge) return;
    var params;
    try { params = JSON.parse(b.getAttribute("data-jsapi")); } catch (_) { return; }
    var out = $('[data-testid="jsapi-result"]');
    window.WeixinJSBridge.invoke("getBrandWCPayRequest", params, function (res) {
      var m = (res && res.err_msg) || "";
      if (!out) return;
      out.textContent = b.getAttribute(/:ok$/.test(m) ? "data-ok" : /:cancel$/.test(m) ? "data-cancel" : "data-fail");
      out.setAttribute("data-result", m);
    });
  };
  if ($('[data-testid="jsapi-pay"]')) {
    if (window.WeixinJSBridge) wxPay();
    else document.addEventListener("WeixinJSBridgeReady", wxPay, { once: true });
  }
  document.addEventListener("click", function (e) {
    if (e.target.closest && e.target.closest('[data-testid="jsapi-pay"]')) wxPay();
  });

  // ---- copy buttons (also on content swapped in later) ----
  document.addEventListener("click", function (e) {
    var b = e.target.closest && e.target.closest("button.copy");
    if (!b) return;
    var text = b.getAttribute("data-copy");
    var done = function () {
      var was = b.textContent;
      b.textContent = b.getAttribute("data-done") || "✓";
      setTimeout(function () { b.textContent = was; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { legacy(text); done(); });
    } else { legacy(text); done(); }
  });
  function legacy(text) {
    var t = document.createElement("textarea");
    t.value = text; t.setAttribute("readonly", ""); t.style.position = "fixed"; t.style.opacity = "0";
    document.body.appendChild(t); t.select();
    try { document.execCommand("copy"); } catch (_) { /* nothing more to try */ }
    document.body.removeChild(t);
  }
})();
