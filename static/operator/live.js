// Live figures without a full reload. Every element with data-live-url is fetched again every
// data-live-seconds and its content replaced by the server's fragment (the same template the
// page was rendered with). A hidden tab skips its turns; a failed fetch keeps the last figures
// and marks them stale; an expired session reloads the page, which leads to the login page.
(function () {
  "use strict";

  function schedule(element) {
    var seconds = Number(element.dataset.liveSeconds) || 5;
    window.setTimeout(function () { refresh(element); }, seconds * 1000);
  }

  function refresh(element) {
    if (document.hidden) {
      schedule(element);
      return;
    }
    var options = { credentials: "same-origin", redirect: "manual", headers: { "X-Live": "1" } };
    fetch(element.dataset.liveUrl, options)
      .then(function (response) {
        if (response.type === "opaqueredirect" || response.status === 401 || response.status === 403) {
          window.location.reload();
          return null;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        if (html === null) return;
        element.innerHTML = html;
        element.classList.remove("live-stale");
        element.dataset.liveRefreshes = String((Number(element.dataset.liveRefreshes) || 0) + 1);
      })
      .catch(function () { element.classList.add("live-stale"); })
      .finally(function () { schedule(element); });
  }

  document.querySelectorAll("[data-live-url]").forEach(schedule);
})();
