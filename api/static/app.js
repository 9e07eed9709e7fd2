// Conectado pages: the few interactions that call the API (same origin, session cookie).
"use strict";

const HEADERS = { "X-Requested-With": "conectado", "Content-Type": "application/json" };

function fmt(value, unit) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") {
    const n = Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(1);
    return unit ? `${n} ${unit}` : n;
  }
  return String(value);
}

function bps(value) {
  if (value === null || value === undefined) return "—";
  const units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"];
  let i = 0;
  while (value >= 1000 && i < units.length - 1) { value /= 1000; i++; }
  return `${value.toFixed(1)} ${units[i]}`;
}

// The same clock as the rest of the pages: UTC, "2026-12-07 13:22:23 UTC".
function utcTime(iso) {
  return `${new Date(iso).toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

function row(label, value) {
  const tr = document.createElement("tr");
  const th = document.createElement("th");
  const td = document.createElement("td");
  th.textContent = label;
  td.textContent = value;
  tr.append(th, td);
  return tr;
}

async function problemText(response) {
  try {
    const body = await response.json();
    return body.detail || response.statusText;
  } catch (e) {
    return response.statusText;
  }
}

async function probeNow(button) {
  const key = button.dataset.probe;
  const out = document.getElementById("probe-result");
  button.disabled = true;
  out.className = "result";
  out.textContent = "Probing… (up to the SNMP and HTTP timeouts)";
  try {
    const response = await fetch(`/api/sites/${encodeURIComponent(key)}/probe`, {
      method: "POST", headers: HEADERS, credentials: "same-origin",
    });
    if (!response.ok) {
      out.className = "result error";
      out.textContent = `Probe failed: ${await problemText(response)}`;
      return;
    }
    const r = await response.json();
    out.textContent = "";
    const badge = document.createElement("span");
    badge.className = `badge ${r.state}`;
    badge.id = "probe-state";
    badge.textContent = r.state;
    const title = document.createElement("p");
    title.append("Live result: ", badge, ` in ${fmt(r.duration_ms, "ms")} at ${utcTime(r.probed_at)}`);
    const table = document.createElement("table");
    if (r.snmp) {
      table.append(
        row("SNMP", r.snmp.ok ? `ok, ${fmt(r.snmp.latency_ms, "ms")}` : `failed: ${r.snmp.error}`),
        row("WAN interface", r.snmp.oper_status === 1 ? "up" : r.snmp.oper_status === null ? "—" : "down"),
        row("Traffic in / out", `${bps(r.snmp.in_bps)} / ${bps(r.snmp.out_bps)}`),
        row("Uptime (agent)", r.snmp.sys_uptime === null ? "—" : `${(r.snmp.sys_uptime / 8640000).toFixed(2)} days`),
      );
    } else {
      table.append(row("SNMP", "no SNMP target"));
    }
    if (r.http) {
      table.append(row("HTTP", r.http.ok ? `${r.http.status_code}, ${fmt(r.http.latency_ms, "ms")}` : `failed: ${r.http.error}${r.http.status_code ? " (" + r.http.status_code + ")" : ""}`));
      if (r.http.tls_days_left !== null) table.append(row("TLS certificate", `${fmt(r.http.tls_days_left)} days left`));
    } else {
      table.append(row("HTTP", "no probe URL"));
    }
    out.append(title, table);
    const header = document.getElementById("site-state");
    if (header) {
      header.className = `badge ${r.state}`;
      header.textContent = r.state;
    }
  } catch (e) {
    out.className = "result error";
    out.textContent = `Probe failed: ${e}`;
  } finally {
    button.disabled = false;
  }
}

async function acknowledge(button) {
  const id = button.dataset.ack;
  const comment = window.prompt("Comment for the other operators (optional):", "");
  if (comment === null) return;
  button.disabled = true;
  const response = await fetch(`/api/incidents/${id}/acknowledge`, {
    method: "POST", headers: HEADERS, credentials: "same-origin",
    body: JSON.stringify({ comment: comment || null }),
  });
  if (response.ok) {
    const r = await response.json();
    button.replaceWith(document.createTextNode(`ack: ${r.acknowledged_by}`));
  } else {
    button.disabled = false;
    window.alert(`Could not acknowledge: ${await problemText(response)}`);
  }
}

document.addEventListener("click", (event) => {
  const target = event.target;
  if (!(target instanceof HTMLElement)) return;
  if (target.dataset.probe) probeNow(target);
  if (target.dataset.ack) acknowledge(target);
});
