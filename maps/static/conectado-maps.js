/* Conectado map layers: coverage choropleths, site health clusters, legends and popups.
 * Plain ES5 on top of Leaflet 1.9 and Leaflet.markercluster 1.5; no network access.
 * Data arrives as compact JSON written by PostGIS; strings are escaped before they reach HTML.
 */
(function () {
  "use strict";
  var C = (window.conectado = window.conectado || {});

  var ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  function esc(value) {
    return String(value === null || value === undefined ? "" : value).replace(/[&<>"']/g, function (c) {
      return ESCAPES[c];
    });
  }
  function fmtInt(n) {
    return n === null || n === undefined ? "—" : Math.round(n).toLocaleString("en-US");
  }
  function fmtPct(x) {
    return x === null || x === undefined ? "—" : x.toFixed(1) + " %";
  }
  function fmtNum(x, digits) {
    return x === null || x === undefined ? "—" : x.toFixed(digits);
  }
  function row(label, value) {
    return "<tr><th>" + esc(label) + "</th><td>" + value + "</td></tr>";
  }
  C.esc = esc;
  C.fmtInt = fmtInt;

  /* The map of the page, for tests and embedding pages. */
  C.register = function (map) {
    C.map = map;
    map.getContainer().classList.add("conectado-map");
    return map;
  };

  C.pane = function (map, name, zIndex, interactive) {
    var pane = map.getPane(name) || map.createPane(name);
    pane.style.zIndex = String(zIndex);
    if (!interactive) {
      pane.style.pointerEvents = "none";
    }
    return name;
  };

  C.binColor = function (value, bins, colors) {
    for (var i = 0; i < bins.length; i++) {
      if (value < bins[i]) {
        return colors[i];
      }
    }
    return colors[colors.length - 1];
  };

  /* ---------------------------------------------------------------- coverage map ---- */

  C.municipalityTooltip = function (p, radiusKm) {
    return (
      '<div class="cx-tip"><b>' + esc(p.n) + "</b> <small>" + esc(p.k) + ", " + esc(p.e) + "</small>" +
      "<table>" +
      row("Population 2020", fmtInt(p.p)) +
      row("Sites", fmtInt(p.s)) +
      row("Working sites", fmtInt(p.w) + (p.u ? ' <span class="cx-flag">no working site</span>' : "")) +
      row("Covered (≤ " + radiusKm + " km)", fmtPct(p.c) + " <small>(" + fmtInt(p.cp) + " people)</small>") +
      row("Sites per 10,000", fmtNum(p.d, 2)) +
      row("Uncovered people", fmtInt(p.up)) +
      "</table></div>"
    );
  };

  /* One layer of municipalities coloured by ``opts.field`` (c: coverage %, d: sites/10k). */
  C.coverageLayer = function (map, data, opts) {
    var highlight = { weight: 2.5, color: "#111" };
    var layer = L.geoJSON(data, {
      style: function (f) {
        var p = f.properties;
        var v = p[opts.field];
        var fill = p.u ? opts.uncoveredColor : v === null ? opts.nullColor : C.binColor(v, opts.bins, opts.colors);
        return { color: "#4d4d4d", weight: 0.4, opacity: 0.7, fillColor: fill, fillOpacity: 0.85 };
      },
      onEachFeature: function (f, l) {
        l.bindTooltip(function () {
          return C.municipalityTooltip(f.properties, opts.radiusKm);
        }, { sticky: true, className: "cx-tooltip" });
        l.on("mouseover", function () {
          l.setStyle(highlight);
        });
        l.on("mouseout", function () {
          layer.resetStyle(l);
        });
      },
    });
    layer.conectadoMode = opts.field;
    return layer;
  };

  C.stateBorders = function (map, data) {
    var pane = C.pane(map, "conectado-borders", 450, false);
    return L.geoJSON(data, {
      pane: pane,
      interactive: false,
      style: { color: "#1a1a1a", weight: 1.4, opacity: 0.9, fill: false },
    });
  };

  /* rows: [lat, lon, population, name, municipality, state, metres to nearest working site]. */
  C.localitiesLayer = function (map, rows, radiusKm) {
    var pane = C.pane(map, "conectado-points", 620, true);
    // SVG, not canvas: a canvas in an upper pane would swallow the mouse events of the
    // municipalities below it; SVG only catches them where a circle is drawn.
    var renderer = L.svg({ pane: pane });
    var group = L.featureGroup();
    var maxPop = rows.length ? rows[0][2] : 1;
    rows.forEach(function (r) {
      var radius = 3 + 9 * Math.sqrt(r[2] / maxPop);
      var dist = r[6] === null ? "no working site at all" : (r[6] / 1000).toFixed(1) + " km";
      L.circleMarker([r[0], r[1]], {
        pane: pane,
        renderer: renderer,
        radius: radius,
        color: "#000",
        weight: 1,
        fillColor: "#ffd400",
        fillOpacity: 0.95,
      })
        .bindTooltip(
          '<div class="cx-tip"><b>' + esc(r[3]) + "</b><br>" + esc(r[4]) + ", " + esc(r[5]) +
            "<table>" + row("Population 2020", fmtInt(r[2])) +
            row("Nearest working site", dist) + row("Coverage radius", radiusKm + " km") + "</table></div>",
          { className: "cx-tooltip" }
        )
        .addTo(group);
    });
    return group;
  };

  /* A legend control; sections keyed by base-layer name follow the layer switcher. */
  /* A map narrower or lower than these (a phone; the site page's frame, 540 x 420 beside the
     status card on a desktop; the dashboard's 420 px high frame) starts with its legend folded
     and no popup open: a 250 px legend and a 230 px popup would cover the map the user came to
     see. The coverage page's frame is 600 px high so that its legend stays open. */
  C.NARROW_PX = 720;
  C.LOW_PX = 480;
  C.isNarrow = function (map) {
    var size = map.getSize();
    return size.x < C.NARROW_PX || size.y < C.LOW_PX;
  };

  /* A layer switcher made expanded (the coverage map's, so that its two views are seen at
     once) starts collapsed to its icon on a small map, where its list would cover the map. */
  var layersOnAdd = L.Control.Layers.prototype.onAdd;
  L.Control.Layers.include({
    onAdd: function (map) {
      if (C.isNarrow(map)) {
        this.options.collapsed = true;
      }
      return layersOnAdd.call(this, map);
    },
  });

  C.legend = function (map, header, sections, initial) {
    var control = L.control({ position: "bottomright" });
    control.onAdd = function () {
      var div = L.DomUtil.create("div", "conectado-legend");
      L.DomEvent.disableClickPropagation(div);
      L.DomEvent.disableScrollPropagation(div);
      var html = '<button type="button" class="cx-legend-toggle" aria-expanded="true">Legend</button>';
      html += header ? '<div class="cx-legend-header">' + header + "</div>" : "";
      Object.keys(sections).forEach(function (name) {
        html += '<div class="cx-legend-section" data-layer="' + esc(name) + '">' + sections[name] + "</div>";
      });
      div.innerHTML = html;
      var toggle = div.querySelector(".cx-legend-toggle");
      control.fold = function (folded) {
        L.DomUtil[folded ? "addClass" : "removeClass"](div, "cx-folded");
        toggle.setAttribute("aria-expanded", folded ? "false" : "true");
      };
      L.DomEvent.on(toggle, "click", function () {
        control.fold(!L.DomUtil.hasClass(div, "cx-folded"));
      });
      if (C.isNarrow(map)) {
        L.DomUtil.addClass(div, "cx-small");
        control.fold(true);
      }
      control.show = function (name) {
        var parts = div.querySelectorAll(".cx-legend-section");
        for (var i = 0; i < parts.length; i++) {
          var own = parts[i].getAttribute("data-layer");
          parts[i].style.display = own === name || own === "*" ? "" : "none";
        }
      };
      control.show(initial);
      return div;
    };
    control.addTo(map);
    map.on("baselayerchange", function (e) {
      control.show(e.name);
    });
    return control;
  };

  /* ------------------------------------------------------------------ health map ---- */

  // Index = the state's code in the site data (maps/site_data.py STATUS_CODES).
  C.STATUS = ["up", "degraded", "down", "unknown", "unmonitored"];
  C.STATUS_COLORS = ["#1a9641", "#f29e2e", "#d7191c", "#8c8c8c", "#d9d9e3"];

  function ago(minutes) {
    if (minutes === null || minutes === undefined) {
      return "never";
    }
    if (minutes < 1) {
      return "just now";
    }
    if (minutes < 90) {
      return Math.round(minutes) + " min ago";
    }
    if (minutes < 48 * 60) {
      return (minutes / 60).toFixed(1) + " h ago";
    }
    return Math.round(minutes / 1440) + " days ago";
  }

  C.sitePopup = function (d, i) {
    var asOf = new Date(d.as_of);
    var seen = d.seen[i];
    var seenText = seen === null ? "never" : new Date(asOf.getTime() - seen * 60000).toISOString().slice(0, 16).replace("T", " ") + " UTC (" + ago(seen) + ")";
    var up = d.up[i];
    var st = d.st[i];
    return (
      '<div class="cx-tip"><b>' + esc(d.name[i]) + "</b>" +
      "<table>" +
      row("Key", "<code>" + esc(d.key[i]) + "</code>") +
      row("Status", '<span class="cx-dot" style="background:' + C.STATUS_COLORS[st] + '"></span>' + C.STATUS[st]) +
      row("Category", esc(d.cats[d.cat[i]])) +
      row("Provider", esc(d.provs[d.prov[i]] || "—")) +
      row("Municipality", esc(d.muns[d.mun[i]] || "—")) +
      row("Last seen", esc(seenText)) +
      row("Uptime 24 h", up === null ? "no probe results" : (up / 10).toFixed(1) + " %") +
      (d.dist ? row("Distance", (d.dist[i] / 1000).toFixed(2) + " km") : "") +
      "</table></div>"
    );
  };

  function clusterIcon(cluster) {
    var children = cluster.getAllChildMarkers();
    var counts = C.STATUS.map(function () {
      return 0;
    });
    for (var j = 0; j < children.length; j++) {
      counts[children[j].conectadoStatus]++;
    }
    var n = children.length;
    var start = 0;
    var stops = [];
    for (var k = 0; k < counts.length; k++) {
      if (counts[k]) {
        var end = start + counts[k];
        stops.push(C.STATUS_COLORS[k] + " " + ((start / n) * 360).toFixed(1) + "deg " + ((end / n) * 360).toFixed(1) + "deg");
        start = end;
      }
    }
    var size = n < 100 ? 34 : n < 1000 ? 40 : n < 10000 ? 46 : 52;
    var title = counts
      .map(function (c, s) {
        return c + " " + C.STATUS[s];
      })
      .join(", ");
    return L.divIcon({
      html: '<div class="cx-cluster" title="' + title + '" style="background:conic-gradient(' + stops.join(",") + ')"><span>' + n.toLocaleString("en-US") + "</span></div>",
      className: "cx-cluster-icon",
      iconSize: L.point(size, size),
    });
  }

  C.siteMarkers = function (map, d, opts) {
    var renderer = opts.renderer || L.canvas({ padding: 0.5 });
    var markers = new Array(d.key.length);
    for (var i = 0; i < d.key.length; i++) {
      var m = L.circleMarker([d.lat[i] / d.scale, d.lon[i] / d.scale], {
        renderer: renderer,
        radius: opts.radius || 6,
        color: "#222",
        weight: 1,
        fillColor: C.STATUS_COLORS[d.st[i]],
        fillOpacity: 0.95,
      });
      m.conectadoStatus = d.st[i];
      m.conectadoIndex = i;
      markers[i] = m;
    }
    return markers;
  };

  function bindLazyPopups(layer, d) {
    layer.on("click", function (e) {
      var m = e.layer || e.target;
      if (!m.getPopup()) {
        m.bindPopup(C.sitePopup(d, m.conectadoIndex), { maxWidth: 320 });
      }
      m.openPopup();
    });
  }

  /* Every site, clustered; clusters show their status mix as a pie. */
  C.pending = 0;
  C.healthLayer = function (map, d) {
    C.pending++;
    var done = false;
    var group = L.markerClusterGroup({
      chunkedLoading: true,
      chunkProgress: function (processed, total) {
        if (processed >= total && !done) {
          done = true;
          C.pending--;
        }
      },
      chunkInterval: 150,
      chunkDelay: 20,
      showCoverageOnHover: false,
      maxClusterRadius: 60,
      disableClusteringAtZoom: 15,
      spiderfyOnMaxZoom: false,
      iconCreateFunction: clusterIcon,
    });
    group.addLayers(C.siteMarkers(map, d, { radius: 6 }));
    bindLazyPopups(group, d);
    return group;
  };

  /* A few sites, unclustered (the technician's map). */
  C.sitesLayer = function (map, d, opts) {
    var pane = C.pane(map, "conectado-sites", 630, true);
    var group = L.featureGroup();
    var renderer = L.svg({ pane: pane });
    C.siteMarkers(map, d, { radius: (opts && opts.radius) || 7, renderer: renderer }).forEach(function (m) {
      m.bindTooltip(esc(d.key[m.conectadoIndex]) + " — " + C.STATUS[m.conectadoStatus]);
      group.addLayer(m);
    });
    bindLazyPopups(group, d);
    return group;
  };

  /* The technician's site: a ring around it, drawn above its neighbours, that opens the
     site's popup when tapped (neighbours a few hundred metres away overlap it at first zoom);
     on a wide map the popup starts open, on a narrow one it would cover the map. */
  C.focusSite = function (map, d, key) {
    var i = d.key.indexOf(key);
    if (i < 0) {
      return null;
    }
    var pane = C.pane(map, "conectado-focus", 640, true);
    var ll = [d.lat[i] / d.scale, d.lon[i] / d.scale];
    var ring = L.circleMarker(ll, {
      pane: pane,
      renderer: L.svg({ pane: pane }),
      radius: 15,
      color: "#0b5394",
      weight: 3,
      fill: true,
      fillOpacity: 0,
    }).addTo(map);
    ring.bindPopup(C.sitePopup(d, i), { maxWidth: 320, autoClose: false, closeOnClick: false });
    if (!C.isNarrow(map)) {
      ring.openPopup();
    }
    return ring;
  };

  C.outline = function (map, data, color) {
    return L.geoJSON(data, {
      interactive: false,
      style: { color: color || "#0b5394", weight: 2.5, opacity: 0.9, fillColor: color || "#0b5394", fillOpacity: 0.06 },
    });
  };

  C.statusLegend = function (counts) {
    var html = "<table>";
    for (var k = 0; k < C.STATUS.length; k++) {
      html += '<tr><td><span class="cx-dot" style="background:' + C.STATUS_COLORS[k] + '"></span></td><td>' + C.STATUS[k] + '</td><td class="cx-num">' + fmtInt(counts[k]) + "</td></tr>";
    }
    return html + "</table>";
  };
})();
