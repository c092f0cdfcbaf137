// The Map page: an offline world map (world-atlas TopoJSON, drawn by Leaflet; no tile server),
// own and peers' volumes, conflicts in red, a time slider. Every text from a peer is set with
// textContent, never as HTML.
(function () {
  "use strict";

  var OWN = "#1f4e8c";
  var PEER = "#c2410c";
  var CONFLICT = "#b3261e";

  function text(tag, value, cls) {
    var el = document.createElement(tag);
    el.textContent = value;
    if (cls) {
      el.className = cls;
    }
    return el;
  }

  function iso(ms) {
    return new Date(ms).toISOString().replace(".000Z", "Z").replace("T", " ");
  }

  // Rings that cross the antimeridian jump by ~360 degrees between neighbours and would be
  // drawn as streaks across the map: move their western half east of 180 instead.
  function unwrapRing(ring) {
    var crosses = false;
    for (var i = 1; i < ring.length; i++) {
      if (Math.abs(ring[i][0] - ring[i - 1][0]) > 180) {
        crosses = true;
        break;
      }
    }
    if (!crosses) {
      return ring;
    }
    return ring.map(function (p) {
      return p[0] < 0 ? [p[0] + 360, p[1]] : p;
    });
  }

  function unwrap(geometry) {
    if (!geometry) {
      return geometry;
    }
    if (geometry.type === "Polygon") {
      geometry.coordinates = geometry.coordinates.map(unwrapRing);
    } else if (geometry.type === "MultiPolygon") {
      geometry.coordinates = geometry.coordinates.map(function (poly) {
        return poly.map(unwrapRing);
      });
    }
    return geometry;
  }

  document.addEventListener("DOMContentLoaded", function () {
    var el = document.getElementById("map");
    if (!el || !window.L) {
      return;
    }
    var map = window.L.map(el, { minZoom: 1, worldCopyJump: false, attributionControl: false });
    map.setView([45, 40], 2);
    var slider = document.getElementById("time-slider");
    var label = document.getElementById("time-label");
    var allTimes = document.getElementById("all-times");
    var layer = window.L.layerGroup().addTo(map);
    var data = null;
    var fitted = false;

    fetch(el.getAttribute("data-world"), { credentials: "same-origin" })
      .then(function (r) {
        return r.json();
      })
      .then(function (topo) {
        var countries = window.topojson.feature(topo, topo.objects.countries);
        countries.features.forEach(function (f) {
          unwrap(f.geometry);
        });
        window.L.geoJSON(countries, {
          interactive: false,
          style: { color: "#8795a5", weight: 0.6, fillColor: "#eef0f2", fillOpacity: 1 },
        }).addTo(map);
        layer.remove();
        layer.addTo(map); // volumes above the countries
        document.body.setAttribute("data-world-drawn", "yes");
      });

    function selectRow(n) {
      document.querySelectorAll("#conflicts tr.selected").forEach(function (row) {
        row.classList.remove("selected");
      });
      var row = document.getElementById("conflict-" + n);
      if (row) {
        row.classList.add("selected");
        row.scrollIntoView({ block: "nearest" });
      }
    }

    function draw() {
      layer.clearLayers();
      if (!data) {
        return;
      }
      var t = allTimes.checked ? null : Number(slider.value);
      label.textContent = t === null ? "—" : iso(t);
      function active(item) {
        return t === null || (item.t0 <= t && t < item.t1);
      }
      data.volumes.forEach(function (v) {
        if (!active(v)) {
          return;
        }
        var tip = text("span", (v.own ? "" : v.owner + ": ") + v.id + " · " + Math.round(v.lower) +
          "–" + Math.round(v.upper) + " m · " + iso(v.t0) + " – " + iso(v.t1));
        window.L.geoJSON(v.geometry, {
          style: { color: v.own ? OWN : PEER, weight: 1.5, fillOpacity: 0.15 },
        })
          .bindTooltip(tip)
          .addTo(layer);
      });
      data.conflicts.forEach(function (c) {
        if (!active(c)) {
          return;
        }
        var tip = text("span", "#" + c.n + " " + c.own + " × " + c.peer + " · " + c.area_km2 + " km²");
        window.L.geoJSON(c.geometry, {
          style: { color: CONFLICT, weight: 3, fillColor: CONFLICT, fillOpacity: 0.5 },
          className: "conflict",
        })
          .bindTooltip(tip)
          .on("click", function () {
            selectRow(c.n);
          })
          .addTo(layer);
      });
      document.body.setAttribute("data-conflicts-drawn", String(layer.getLayers().length && data.conflicts.length));
    }

    function load() {
      fetch(el.getAttribute("data-src"), { credentials: "same-origin" })
        .then(function (r) {
          return r.json();
        })
        .then(function (d) {
          data = d;
          var times = d.volumes.map(function (v) {
            return v.t0;
          }).concat(d.volumes.map(function (v) {
            return v.t1;
          }));
          if (times.length) {
            var lo = Math.min.apply(null, times);
            var hi = Math.max.apply(null, times);
            slider.min = String(lo);
            slider.max = String(hi);
            if (Number(slider.value) < lo || Number(slider.value) > hi) {
              slider.value = String(Math.min(Math.max(Date.now(), lo), hi));
            }
          }
          draw();
          if (!fitted && d.volumes.length) {
            fitted = true;
            var all = window.L.geoJSON({
              type: "GeometryCollection",
              geometries: d.volumes.map(function (v) {
                return v.geometry;
              }),
            });
            map.fitBounds(all.getBounds().pad(1.5), { maxZoom: 6, animate: false });
            document.body.setAttribute("data-map-fitted", "yes");
          }
        });
    }

    slider.addEventListener("input", function () {
      allTimes.checked = false;
      draw();
    });
    allTimes.addEventListener("change", draw);
    document.body.addEventListener("htmx:afterSwap", function (event) {
      if (event.target && event.target.id === "map-live") {
        load();
      }
    });
    load();
  });
})();
