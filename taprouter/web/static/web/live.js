// Live parts: every element with data-live="URL" is refetched every data-every ms (default 1000)
// and its content replaced. A reply that is not the part (the session expired: the login page)
// reloads the whole page, which then shows the login form.
(function () {
  function poll(el) {
    var every = parseInt(el.getAttribute("data-every") || "1000", 10);
    function tick() {
      fetch(el.getAttribute("data-live"), {credentials: "same-origin", headers: {"X-Live": "1"}})
        .then(function (r) {
          if (r.redirected || !r.ok) { window.location.reload(); return null; }
          return r.text();
        })
        .then(function (html) { if (html !== null) { el.innerHTML = html; el.setAttribute("data-updated", Date.now()); } })
        .catch(function () {})
        .then(function () { setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  }
  document.querySelectorAll("[data-live]").forEach(poll);
})();
