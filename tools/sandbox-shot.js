// Drive the CDS Hooks sandbox in headless Chromium and save a screenshot of the cards.
//   node tools/sandbox-shot.js CHROMIUM URL OUT.png HOOK DRAFTS.json
// The sandbox can only order medicines from its own RxNorm list (no inotuzumab), so the
// order it builds is swapped, in flight, for the scenario's drafted orders (DRAFTS.json:
// {draftOrders, selections}); everything else (discovery, prefetch, the FHIR server, the
// JWT, CORS, rendering) is the sandbox's own.
const { chromium } = require('playwright-core');
const fs = require('fs');

const [executablePath, url, out, hook, draftsFile] = process.argv.slice(2);
const drafts = JSON.parse(fs.readFileSync(draftsFile, 'utf8'));

(async () => {
  const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const calls = [];
  page.on('console', (m) => { if (m.type() === 'error') console.error('console:', m.text()); });
  await page.route(/\/cds-services\/[^/]+$/, async (route) => {
    const request = route.request();
    if (request.method() !== 'POST') return route.continue();
    const body = JSON.parse(request.postData() || '{}');
    if (body.hook !== hook) return route.continue();
    body.context.draftOrders = drafts.draftOrders;
    if (hook === 'order-select') body.context.selections = drafts.selections;
    calls.push(body.hookInstance);
    return route.continue({ postData: JSON.stringify(body) });
  });
  await page.goto(url, { waitUntil: 'networkidle' });
  const input = page.locator('input[name="medication-input"]');
  await input.waitFor({ timeout: 30000 });
  await input.fill('trametinib');
  await page.getByRole('button', { name: /trametinib/i }).first().click();
  if (hook === 'order-sign') {
    await page.getByRole('button', { name: /sign order/i }).click();
  }
  await page.waitForTimeout(4000);
  await page.waitForLoadState('networkidle');
  await page.screenshot({ path: out, fullPage: true });
  const cards = await page.locator('[class*="card"]').count();
  console.log(`${hook}: ${calls.length} hook call(s) rewritten; page saved to ${out} (${cards} card-like elements)`);
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
