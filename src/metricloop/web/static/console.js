// The console's charts (ECharts, loaded only on pages with a chart) and nothing else: forms work without script.
(function () {
  "use strict";

  function data(el) {
    return el && el.dataset.chart ? JSON.parse(el.dataset.chart) : null;
  }

  var charts = [];

  function make(el) {
    var old = window.echarts.getInstanceByDom(el);
    if (old) { old.dispose(); }
    var chart = window.echarts.init(el, null, { renderer: "canvas" });
    charts.push(chart);
    return chart;
  }

  function incidentChart(el) {
    var d = data(el);
    if (!d) { return; }
    var lower = d.lower.length ? d.lower : d.times.map(function () { return null; });
    var width = d.upper.length ? d.upper.map(function (u, i) {
      return u === null || lower[i] === null ? null : u - lower[i];
    }) : lower;
    var series = [
      { name: "lower", type: "line", data: lower, stack: "band", symbol: "none", lineStyle: { opacity: 0 },
        tooltip: { show: false }, silent: true },
      { name: el.dataset.band, type: "line", data: width, stack: "band", symbol: "none", lineStyle: { opacity: 0 },
        areaStyle: { color: "rgba(23, 92, 211, 0.12)" }, itemStyle: { color: "rgba(23, 92, 211, 0.35)" },
        silent: true },
      { name: el.dataset.expected, type: "line", data: d.expected, symbol: "none",
        lineStyle: { type: "dashed", color: "#667085" }, itemStyle: { color: "#667085" } },
      { name: el.dataset.actual, type: "line", data: d.actual, symbol: "circle", symbolSize: 4,
        itemStyle: { color: "#175cd3" }, lineStyle: { color: "#175cd3", width: 2 } },
      { name: el.dataset.anomaly, type: "scatter", data: d.anomalies, symbolSize: 12,
        itemStyle: { color: "#d92d20" }, z: 5 }
    ];
    make(el).setOption({
      animation: false,
      grid: { left: 8, right: 16, top: 36, bottom: 8, containLabel: true },
      tooltip: { trigger: "axis" },
      legend: { data: [el.dataset.actual, el.dataset.expected, el.dataset.band, el.dataset.anomaly], top: 0 },
      xAxis: { type: "category", data: d.times, boundaryGap: false },
      yAxis: { type: "value", scale: true },
      series: series
    });
  }

  function metricChart(el) {
    var d = data(el);
    if (!d) { return; }
    var stacked = d.series.length > 1;
    make(el).setOption({
      animation: false,
      grid: { left: 8, right: 16, top: 40, bottom: 8, containLabel: true },
      tooltip: { trigger: "axis" },
      legend: { type: "scroll", top: 0 },
      xAxis: { type: "category", data: d.times, boundaryGap: false },
      yAxis: { type: "value", scale: !stacked },
      series: d.series.map(function (s) {
        return { name: s.name, type: "line", data: s.values, symbol: "none", stack: stacked ? "by" : undefined,
          areaStyle: stacked ? {} : undefined };
      })
    });
  }

  function draw() {
    if (!window.echarts) { return; }
    document.querySelectorAll('.chart[data-kind="incident"]').forEach(incidentChart);
    var m = document.getElementById("metric-chart");
    if (m) { metricChart(m); }
  }

  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSettle", draw);
  window.addEventListener("resize", function () { charts.forEach(function (c) { if (!c.isDisposed()) { c.resize(); } }); });
})();
