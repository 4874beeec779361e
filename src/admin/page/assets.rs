//! The page's style sheet and script, inline (the page loads nothing else).

/// The page's style: system fonts, plain colours, tables that fit a laptop screen.
pub(super) const STYLE: &str = r#"
:root{--fg:#1f2328;--muted:#656d76;--line:#d8dee4;--bg:#fff;--soft:#f6f8fa;
--good:#1a7f37;--good-bg:#dafbe1;--warn:#9a6700;--warn-bg:#fff8c5;--bad:#cf222e;--bad-bg:#ffebe9;
--bar:#0969da}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:var(--bg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
code{font:12.5px/1.3 ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace}
a{color:#0969da;text-decoration:none}a:hover{text-decoration:underline}
header.top{display:flex;align-items:baseline;gap:14px;padding:10px 24px;border-bottom:1px solid var(--line);background:var(--soft)}
header.top h1{font-size:17px;margin:0}
.dir{font:13px ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;color:var(--muted)}
.live{margin-left:auto;color:var(--muted);font-size:12.5px}
.dot{display:inline-block;width:8px;height:8px;border-radius:50%;background:var(--good);margin-right:6px}
body.stale .dot{background:var(--bad)}body.stale .live{color:var(--bad);font-weight:600}
body.stale header.top{background:var(--bad-bg);border-bottom:2px solid var(--bad)}
body.stale main{opacity:.45}
main,footer{max-width:1280px;margin:0 auto;padding:0 24px}
footer{color:var(--muted);font-size:12.5px;padding-bottom:24px}
.summary{margin:16px 0 8px;padding:12px 16px;border-left:6px solid;border-radius:4px}
.summary.good{border-color:var(--good);background:var(--good-bg)}
.summary.warn{border-color:var(--warn);background:var(--warn-bg)}
.summary.bad{border-color:var(--bad);background:var(--bad-bg)}
.headline{font-size:19px;font-weight:600;margin:0 0 6px}
.summary.good .mark{color:var(--good)}.summary.warn .mark{color:var(--warn)}.summary.bad .mark{color:var(--bad)}
.facts{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:4px 22px;color:#424a53}
h2{font-size:16px;margin:22px 0 6px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:14px;font-weight:normal;margin:10px 0 4px}
.sub{font-size:12.5px;font-weight:normal;color:var(--muted)}
.muted{color:var(--muted)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%}
th{text-align:left;font-size:11.5px;font-weight:600;color:var(--muted);text-transform:uppercase;letter-spacing:.03em;padding:4px 10px;border-bottom:1px solid var(--line)}
td{padding:4px 10px;vertical-align:baseline}
tbody.route{border-top:1px solid var(--line)}
tr.match td{padding-top:9px;padding-bottom:2px}
.n{display:inline-block;min-width:20px;color:var(--muted);font-size:12px}
.prefix{font-size:14px;font-weight:600}
.matchers{color:var(--muted);font-size:12.5px;margin-left:6px}
.tag{display:inline-block;font-size:11.5px;padding:0 6px;border-radius:10px;background:#ddf4ff;color:#0550ae;margin-left:6px}
.tag.held{background:var(--warn-bg);color:var(--warn);border:1px solid #d4a72c}
.heldwhy{color:var(--warn);font-size:12.5px;margin:2px 0 0 24px}
tr.backend td:first-child{padding-left:34px}
td.mapping{font-weight:600}
.sharecol{width:300px;white-space:nowrap}
.bar{display:inline-block;width:200px;height:12px;background:#eaeef2;border-radius:2px;vertical-align:-1px;overflow:hidden}
.bar>span{display:block;height:100%;background:#8c959f}
tbody.canary .bar>span{background:var(--bar)}
.share{display:inline-block;width:80px;text-align:right;font-weight:700;font-variant-numeric:tabular-nums}
tr.zero .share,tr.zero td.mapping{color:var(--muted)}
tr.shadow .share{font-weight:normal;color:var(--muted);width:auto;margin-left:0}
.written{color:var(--muted);font-size:12.5px;white-space:nowrap}
.src{font:12.5px ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;color:var(--muted);white-space:nowrap}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.pill{display:inline-block;font-size:12px;font-weight:600;padding:0 8px;border-radius:10px;white-space:nowrap}
.pill.good{background:var(--good-bg);color:var(--good)}.pill.wait{background:var(--warn-bg);color:var(--warn)}
.pill.bad{background:var(--bad);color:#fff}.pill.info{background:#ddf4ff;color:#0550ae}
table.envoys td,table.diagnostics td{border-bottom:1px solid #eef1f4}
.type{font-size:12px;margin-right:8px;white-space:nowrap}
.type.good{color:var(--good)}.type.wait{color:var(--warn)}.type.bad{color:var(--bad);font-weight:700}
tr.nack td{background:var(--bad-bg);color:#82071e;padding-left:24px}
tr.nack.old td{background:transparent;color:var(--muted)}
tr.nack .msg{font:12.5px ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;white-space:pre-wrap}
td.msg{max-width:640px}
.problem{color:var(--bad)}
.notice{margin:4px 0 6px;padding:6px 10px;border-radius:4px}
.notice.bad{background:var(--bad-bg);color:#82071e}
.updated{color:var(--muted);font-size:12.5px;margin-top:20px}
"#;

/// The page's script: refresh by fetching the page and swapping its content in, mark the page
/// stale when canary-xds cannot be reached, and show times in the reader's time zone.
pub const SCRIPT: &str = r#"
(function () {
  var every = 1000 * (Number(document.body.dataset.refresh) || 5), lostAt = null;
  var liveText = document.getElementById('live-text').textContent;
  function localTimes() {
    document.querySelectorAll('time.local').forEach(function (t) {
      var d = new Date(t.getAttribute('datetime'));
      if (!isNaN(d)) t.textContent = d.toLocaleString();
    });
  }
  function refresh() {
    if (document.hidden) return;
    fetch(location.pathname, { cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var fresh = doc.getElementById('content');
        if (!fresh) throw new Error('not the page');
        document.getElementById('content').replaceWith(document.adoptNode(fresh));
        document.title = doc.title;
        lostAt = null;
        document.body.classList.remove('stale');
        document.getElementById('live-text').textContent = liveText;
        localTimes();
      })
      .catch(function () {
        if (!lostAt) lostAt = new Date();
        document.body.classList.add('stale');
        document.getElementById('live-text').textContent =
          'cannot reach canary-xds since ' + lostAt.toLocaleTimeString() + ': showing its last answer';
      });
  }
  localTimes();
  setInterval(refresh, every);
  document.addEventListener('visibilitychange', refresh);
})();
"#;
