// cxmine dashboard: charts from data-chart attributes, filter auto-submit, the phone menu and live updates.
(function () {
  "use strict";

  function renderCharts(root) {
    if (!window.echarts) return;
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var option = JSON.parse(el.getAttribute("data-chart"));
      var links = option._links; delete option._links;
      var existing = window.echarts.getInstanceByDom(el);
      var chart = existing || window.echarts.init(el, null, { renderer: "svg" });
      chart.setOption(option, true);
      if (links && !existing) {
        chart.on("click", function (params) {
          var target = (links[params.seriesIndex] && links[params.seriesIndex][params.dataIndex]) ||
            (links[params.dataIndex] && typeof links[params.dataIndex] === "string" ? links[params.dataIndex] : null);
          if (typeof target === "string") window.location.href = target;
        });
      }
      el.setAttribute("data-chart-ready", "1");
    });
  }

  function showStatus(text) {
    var box = document.getElementById("live-status");
    if (!box) return;
    box.innerHTML = '<span class="live-dot" aria-hidden="true"></span>' + text;
    box.classList.add("show");
    clearTimeout(box._hide);
    box._hide = setTimeout(function () { box.classList.remove("show"); }, 6000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    renderCharts(document);
    var filterBox = document.querySelector("details[data-filters]");
    if (filterBox && window.matchMedia("(max-width: 760px)").matches) filterBox.removeAttribute("open");
    document.querySelectorAll("form[data-autosubmit] select").forEach(function (select) {
      select.addEventListener("change", function () {
        if (select.name === "range" && select.value === "custom") return;
        select.form.requestSubmit();
      });
    });
    var toggle = document.querySelector("[data-nav-toggle]");
    if (toggle) toggle.addEventListener("click", function () {
      var nav = document.getElementById("main-nav");
      var open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
    window.addEventListener("resize", function () {
      document.querySelectorAll("[data-chart-ready]").forEach(function (el) {
        var chart = window.echarts && window.echarts.getInstanceByDom(el);
        if (chart) chart.resize();
      });
    });
  });

  // A refused action (403 stale token, 409 not allowed now, 422 bad input) shows its explanation in place.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status >= 400 && status < 500 && status !== 401) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener("htmx:sendError", function () { showStatus("The server cannot be reached; retrying."); });

  document.addEventListener("htmx:afterSettle", function (event) { renderCharts(event.target); });
  document.addEventListener("htmx:sseMessage", function (event) {
    var type = event.detail && event.detail.type;
    if (type === "scored" || type === "alert") {
      showStatus(event.detail.data);
      document.body.setAttribute("data-last-event", type + " " + Date.now());
    }
  });
  document.addEventListener("htmx:sseOpen", function () { document.body.setAttribute("data-live", "open"); });
})();
