// Drives the built dashboard in Debian's headless Chromium (playwright-core, no browser
// download) against a running api. Input: env FLEETPULSE_E2E (JSON: baseUrl, artifacts,
// users, drivers). Output: one JSON object on stdout with what was seen; the pytest test
// (tests/e2e/test_dashboard.py) asserts on it. Screenshots go to `artifacts`.
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "..", "..", "dashboard", "package.json"));
const { chromium } = require("playwright-core");

const cfg = JSON.parse(process.env.FLEETPULSE_E2E);
mkdirSync(cfg.artifacts, { recursive: true });
const out = { steps: [], console: [] };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const browser = await chromium.launch({
  executablePath: cfg.chromium ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    // No --user-data-dir: Playwright refuses it here and gives every launch a fresh
    // temporary profile of its own.
  ],
});

async function session(user) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") out.console.push(`${m.type()}: ${m.text().slice(0, 400)}`);
  });
  page.on("pageerror", (e) => out.console.push(`pageerror: ${String(e).slice(0, 300)}`));
  await page.goto(cfg.baseUrl + "/");
  await page.fill("input[name=email]", user.email);
  await page.fill("input[name=password]", user.password);
  await page.fill("input[name=tenantId]", user.tenantId);
  await page.click("button[type=submit]");
  await page.waitForSelector("[data-testid=who]", { timeout: 15_000 });
  return { context, page };
}

const hook = (page, expr) => page.evaluate(`(() => { const h = window.__fleetpulse; return ${expr}; })()`);

async function waitHook(page, expr, timeout = 30_000) {
  // Polls with page.evaluate: waitForFunction compiles a string predicate with eval inside the
  // page, which the app's Content-Security-Policy (no 'unsafe-eval', api/security_headers.py)
  // refuses; the dashboard itself runs under that policy in this test.
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await hook(page, expr)) return;
    if (Date.now() > deadline) throw new Error(`waitHook: not true within ${timeout} ms: ${expr}`);
    await sleep(200);
  }
}

async function shot(page, name) {
  await sleep(800); // SwiftShader compiles a layer's shaders on its first draw
  const path = join(cfg.artifacts, name);
  await page.screenshot({ path });
  out.steps.push({ screenshot: path });
}

/** Ids of every driver the app ever held while watching for ms (store, drawn markers, DOM). */
async function watchIds(page, ms) {
  const seen = new Set();
  const names = new Set();
  const until = Date.now() + ms;
  while (Date.now() < until) {
    for (const id of await hook(page, "Object.keys(h.state().drivers)")) seen.add(id);
    for (const id of await hook(page, "Object.keys(h.livePositions)")) seen.add(id);
    for (const n of await page.$$eval("[data-testid=driver-row] strong", (els) => els.map((e) => e.textContent)))
      names.add(n);
    await sleep(250);
  }
  return { ids: [...seen].sort(), names: [...names].sort() };
}

try {
  // --- admin of tenant 1: live map --------------------------------------------------------
  const { context, page } = await session(cfg.users.admin1);
  await page.evaluate(() => (window.__fleetpulse.trace = true));
  await waitHook(page, "h.liveMarkers >= 2");
  out.liveMarkers = await hook(page, "h.liveMarkers");
  out.storeDrivers = await hook(page, "Object.keys(h.state().drivers).length");
  out.listRows = await page.locator("[data-testid=driver-row]").count();
  out.feed = await page.textContent("[data-testid=feed-status]");

  // Smooth movement: sample where John is drawn every 50 ms for 4 s; live fixes come every
  // second, so a marker that glides is drawn at many more places than fixes received.
  const john = cfg.drivers.john;
  const fixesBefore = await hook(page, `h.state().drivers["${john}"]?.position?.fixTimeMs ?? 0`);
  const drawn = new Set();
  for (let i = 0; i < 80; i++) {
    const p = await hook(page, `h.livePositions["${john}"]`);
    if (p) drawn.add(p.map((v) => v.toFixed(7)).join(","));
    await sleep(50);
  }
  const fixesAfter = await hook(page, `h.state().drivers["${john}"]?.position?.fixTimeMs ?? 0`);
  out.smooth = { drawnPlaces: drawn.size, fixSpanMs: fixesAfter - fixesBefore };
  await sleep(1_500); // the base map loads the roads of the fitted view
  out.roads = await hook(page, "h.roads");
  await shot(page, "01-live.png");

  // Open a driver: its route and visits.
  await page.click(`[data-testid=driver-row][data-driver-id="${john}"]`);
  await page.waitForSelector("[data-testid=route]", { timeout: 15_000 });
  await waitHook(page, "h.routePoints > 1");
  // every remaining stop's ETA (the worker writes them; the panel re-reads the route): wait
  // until each pending stop shows one, then read the stops and their ETAs at one moment
  const panel = () => ({
    visits: [...document.querySelectorAll("[data-testid=visit]")].map((e) => e.getAttribute("data-status")),
    visitEtas: [...document.querySelectorAll("[data-testid=visit-eta]")].map((e) => e.textContent),
  });
  await page.waitForFunction(
    () => {
      const pending = document.querySelectorAll("[data-testid=visit][data-status=pending]").length;
      return pending >= 1 && document.querySelectorAll("[data-testid=visit-eta]").length === pending;
    },
    null,
    { timeout: 45_000 },
  ).catch(() => {});
  out.route = {
    name: await page.textContent("[data-testid=route-name]"),
    points: await hook(page, "h.routePoints"),
    ...(await page.evaluate(panel)),
  };
  await shot(page, "02-live-driver.png");

  // Playback: John's last hour, 60x, 5 s of play.
  await page.click("header nav >> text=Playback");
  await page.waitForSelector("[data-testid=playback-load]");
  await page.selectOption("[data-testid=playback-driver]", john);
  await page.click("[data-testid=playback-load]");
  await waitHook(page, "h.playbackTracks === 1 && h.playbackHead !== null");
  await page.selectOption("[data-testid=speed]", "60");
  const head0 = await hook(page, "h.playbackHead");
  const t0 = await hook(page, "h.playbackTime");
  await page.click("[data-testid=play]");
  await sleep(5_000);
  const head1 = await hook(page, "h.playbackHead");
  const t1 = await hook(page, "h.playbackTime");
  out.playback = { head0, head1, t0, t1, summary: await page.textContent("[data-testid=playback-summary]") };
  await shot(page, "03-playback.png");

  // The whole fleet (the area the fleet is in).
  await page.selectOption("[data-testid=playback-driver]", "__fleet__");
  await page.click("[data-testid=playback-load]");
  await waitHook(page, "h.playbackTracks >= 2");
  out.fleetTracks = await hook(page, "h.playbackTracks");
  await page.click("[data-testid=play]");
  await sleep(2_000);
  await shot(page, "04-playback-fleet.png");

  // Heatmap.
  await page.click("header nav >> text=Heatmap");
  await waitHook(page, "h.hexagons > 0");
  await sleep(1_000); // let the fit and the tiles settle for the screenshot
  out.heatmap = { hexagons: await hook(page, "h.hexagons"), legend: await page.textContent("[data-testid=legend]") };
  await shot(page, "05-heatmap.png");

  // The base map: vector tiles from PostGIS (the Helsinki extract), at street and city zoom;
  // its style checked by MapLibre's own validator (an invalid layer is skipped silently).
  const style = await page.evaluate(async () => {
    const token = window.__fleetpulse.state().auth.accessToken;
    const resp = await fetch("/api/tiles/base/style.json", { headers: { Authorization: `Bearer ${token}` } });
    return resp.json();
  });
  const styleSpec = require("@maplibre/maplibre-gl-style-spec");
  out.basemap = {
    layers: await hook(page, "h.baseLayers"),
    styleErrors: styleSpec.validateStyleMin(style).map((e) => e.message),
    views: [],
  };
  for (const [zoom, name] of [[16, "05b-basemap-street.png"], [13.5, "05c-basemap-city.png"]]) {
    const before = await hook(page, "h.baseTiles");
    await page.evaluate(`window.__fleetpulse.map.jumpTo({ center: [24.9415, 60.1700], zoom: ${zoom} })`);
    await waitHook(page, `h.baseTiles > ${before} && h.map.areTilesLoaded()`);
    await waitHook(page, "h.labels.length > 0");
    await sleep(500);
    await shot(page, name);
    out.basemap.views.push({
      zoom,
      screenshot: join(cfg.artifacts, name),
      tiles: (await hook(page, "h.baseTiles")) - before,
      labels: await hook(page, "h.labels"),
    });
  }

  // Monitoring (admin).
  await page.click("header nav >> text=Monitoring");
  await page.waitForSelector("[data-testid=cdc-lag] tbody tr", { timeout: 15_000 });
  out.monitoring = {
    lagRows: await page.locator("[data-testid=cdc-lag] tbody tr").count(),
    deadLetters: await page.locator("[data-testid=dead-letters]").count(),
  };
  await shot(page, "06-monitoring.png");
  await context.close();

  // --- dispatcher of tenant 1: never sees tenant 2 ---------------------------------------
  {
    const s = await session(cfg.users.dispatcher1);
    await s.page.evaluate(() => (window.__fleetpulse.trace = true));
    await waitHook(s.page, "h.liveMarkers >= 2");
    out.dispatcher1 = await watchIds(s.page, 4_000);
    out.dispatcher1.monitoringLink = await s.page.locator("header nav >> text=Monitoring").count();
    await shot(s.page, "07-dispatcher-tenant1.png");
    await s.context.close();
  }
  // --- admin of tenant 2: only their own driver ------------------------------------------
  {
    const s = await session(cfg.users.admin2);
    await s.page.evaluate(() => (window.__fleetpulse.trace = true));
    await waitHook(s.page, "h.liveMarkers >= 1");
    out.admin2 = await watchIds(s.page, 3_000);
    await s.context.close();
  }
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
