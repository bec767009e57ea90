// The Relais console: a client of the documented API, nothing more. Every value that
// comes from the API reaches the page as text (textContent, attributes), never as HTML,
// and the page's Content-Security-Policy forbids inline script besides.
'use strict';

(() => {
  const STORE = window.sessionStorage;
  const KEYS = { token: 'relais.token', tenant: 'relais.tenant', project: 'relais.project', kind: 'relais.kind', expires: 'relais.expires' };
  const STATUSES = ['Pending', 'Initiated', 'Running', 'Completed', 'Failed', 'Cancelled', 'Timeout', 'Skipped'];
  const FINAL = new Set(['Completed', 'Failed', 'Cancelled', 'Timeout', 'Skipped']);
  const PRIORITIES = ['Low', 'Normal', 'High', 'Critical'];
  /// Members drawn in a batch's graph; the table below it lists every member.
  const MAX_DRAWN = 500;

  // ---- DOM, without HTML strings ----------------------------------------------------

  function h(tag, attrs, ...children) {
    return build(document.createElement(tag), attrs, children);
  }

  function svg(tag, attrs, ...children) {
    return build(document.createElementNS('http://www.w3.org/2000/svg', tag), attrs, children);
  }

  function build(el, attrs, children) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else if (key === 'class') el.setAttribute('class', value);
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function link(path, ...children) {
    return h('a', { href: path, 'data-link': true }, ...children);
  }

  function badge(status) {
    return h('span', { class: `badge s-${status}` }, status);
  }

  function bar(percentage) {
    const value = Math.max(0, Math.min(100, Number(percentage) || 0));
    const fill = h('div');
    // Through the CSSOM: the policy refuses style attributes.
    fill.style.width = `${value}%`;
    return h('div', { class: 'progress', title: `${value}%` }, fill);
  }

  function kv(pairs) {
    return h('dl', { class: 'kv' }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
      .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  }

  function json(value) {
    return h('pre', {}, JSON.stringify(value, null, 2));
  }

  function when(text) {
    return text ? text.replace('T', ' ').replace(/\.\d+/, '').replace('+00:00', 'Z') : '';
  }

  const app = () => document.getElementById('app');

  function show(...children) {
    app().replaceChildren(build(document.createDocumentFragment(), {}, children));
  }

  function failure(error) {
    return h('p', { class: 'error', role: 'alert' }, error && error.message ? error.message : String(error));
  }

  // ---- session and API ----------------------------------------------------------------

  const session = {
    get token() { return STORE.getItem(KEYS.token); },
    get tenant() { return STORE.getItem(KEYS.tenant); },
    get project() { return STORE.getItem(KEYS.project); },
    get portal() { return STORE.getItem(KEYS.kind) === 'portal'; },
    save(token, who, project) {
      STORE.setItem(KEYS.token, token);
      STORE.setItem(KEYS.tenant, who.tenantId);
      STORE.setItem(KEYS.project, project);
      STORE.setItem(KEYS.kind, who.kind);
      if (who.expiresAt) STORE.setItem(KEYS.expires, who.expiresAt);
      else STORE.removeItem(KEYS.expires);
    },
    clear() { Object.values(KEYS).forEach((k) => STORE.removeItem(k)); },
  };

  class ApiError extends Error {
    constructor(status, body) {
      super(body && (body.message || body.error) ? `${body.message || body.error}` : `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function call(method, path, body, token) {
    const headers = { Authorization: `Bearer ${token || session.token}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const answer = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await answer.text();
    let parsed = null;
    try { parsed = text ? JSON.parse(text) : null; } catch (_) { parsed = { message: text }; }
    if (answer.status === 401 && !token) {
      session.clear();
      live.stop();
      go('/console/signin', true);
      throw new ApiError(401, { message: 'Signed out: the token is no longer accepted.' });
    }
    if (!answer.ok) throw new ApiError(answer.status, parsed);
    return parsed;
  }

  const api = {
    base() { return `/api/${encodeURIComponent(session.tenant)}/${encodeURIComponent(session.project)}/async`; },
    get(path) { return call('GET', this.base() + path); },
    post(path, body) { return call('POST', this.base() + path, body === undefined ? {} : body); },
    put(path, body) { return call('PUT', this.base() + path, body); },
    del(path, body) { return call('DELETE', this.base() + path, body); },
  };

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
    const text = q.toString();
    return text ? `?${text}` : '';
  }

  // ---- live updates: the events stream, read with fetch so the token goes in a header --

  const live = {
    controller: null,
    lastId: null,
    listeners: new Set(),
    start() {
      if (this.controller || session.portal || !session.token) return;
      this.controller = new AbortController();
      this.loop(this.controller.signal);
    },
    stop() {
      if (this.controller) this.controller.abort();
      this.controller = null;
      this.lastId = null;
      document.getElementById('live').classList.remove('on');
    },
    async loop(signal) {
      const dot = document.getElementById('live');
      while (!signal.aborted) {
        let retry = 1000;
        try {
          const headers = { Authorization: `Bearer ${session.token}` };
          if (this.lastId) headers['Last-Event-ID'] = this.lastId;
          const answer = await fetch(`${api.base()}/events/stream${this.lastId ? '' : '?from=now'}`, { headers, signal });
          // A token that may not read the events never will: no live updates, no retries.
          if ([401, 403, 404].includes(answer.status)) return;
          if (!answer.ok) throw new Error(`stream answered ${answer.status}`);
          dot.classList.add('on');
          // A new connection may have missed what happened in between: pages reload.
          this.emit(null);
          const reader = answer.body.getReader();
          const decoder = new TextDecoder();
          let buffer = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += decoder.decode(value, { stream: true });
            let end;
            while ((end = buffer.indexOf('\n\n')) >= 0) {
              const frame = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              const message = { id: null, data: [] };
              for (const line of frame.split('\n')) {
                if (line.startsWith(':')) continue;
                const colon = line.indexOf(':');
                const field = colon < 0 ? line : line.slice(0, colon);
                const data = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
                if (field === 'id') message.id = data;
                else if (field === 'data') message.data.push(data);
                else if (field === 'retry' && /^\d+$/.test(data)) retry = Number(data);
              }
              if (message.id) this.lastId = message.id;
              if (message.data.length) {
                try { this.emit(JSON.parse(message.data.join('\n'))); } catch (_) { /* not an envelope */ }
              }
            }
          }
        } catch (_) {
          if (signal.aborted) return;
        }
        dot.classList.remove('on');
        await new Promise((resolve) => setTimeout(resolve, retry));
      }
    },
    emit(event) { this.listeners.forEach((listener) => listener(event)); },
    // A page's listener, dropped when the page changes.
    on(listener) { this.listeners.add(listener); return () => this.listeners.delete(listener); },
  };

  /// Runs `reload` soon after events that `concerns` says matter (or after a reconnect),
  /// at most a few times a second.
  function follow(concerns, reload) {
    let timer = null;
    const off = live.on((event) => {
      if (event && !concerns(event)) return;
      if (timer) return;
      timer = setTimeout(() => { timer = null; reload(); }, 250);
    });
    return () => { off(); if (timer) clearTimeout(timer); };
  }

  // ---- routing ------------------------------------------------------------------------

  let leave = () => {};
  let rendering = 0;

  function go(path, replace) {
    if (replace) history.replaceState(null, '', path);
    else history.pushState(null, '', path);
    render();
  }

  document.addEventListener('click', (e) => {
    const a = e.target.closest && e.target.closest('a[data-link]');
    if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    go(a.getAttribute('href'));
  });
  window.addEventListener('popstate', () => render());

  function nav() {
    const here = location.pathname;
    const items = session.portal ? [['Webhooks', '/console/webhooks']]
      : [['Operations', '/console/operations'], ['Batches', '/console/batches'], ['Webhooks', '/console/webhooks']];
    const links = items.map(([name, path]) => {
      const a = link(path, name);
      if (here.startsWith(path)) a.classList.add('current');
      return a;
    });
    if (session.token) {
      links.push(h('a', { href: '/console/signin', onclick: (e) => { e.preventDefault(); session.clear(); live.stop(); go('/console/signin'); } }, 'Sign out'));
    }
    document.getElementById('nav').replaceChildren(...(session.token ? links : []));
    const expires = STORE.getItem(KEYS.expires);
    document.getElementById('who').textContent = session.token
      ? `${session.portal ? 'portal link' : 'project'} ${session.project}${expires ? ` · until ${when(expires)}` : ''}`
      : '';
  }

  async function render() {
    leave();
    leave = () => {};
    const ticket = ++rendering;
    const path = location.pathname.replace(/\/+$/, '') || '/console';
    if (path === '/console/portal') return portal();
    if (!session.token) {
      if (path !== '/console/signin') STORE.setItem('relais.after', location.pathname + location.search);
      nav();
      return signin();
    }
    nav();
    live.start();
    const parts = path.split('/').slice(2).map(decodeURIComponent);
    const page = pages(parts);
    if (!page) return show(h('h1', {}, 'Not found'), h('p', {}, link('/console', 'Back to the console')));
    try {
      await page(() => ticket === rendering);
    } catch (error) {
      if (ticket === rendering) show(failure(error));
    }
  }

  function pages(parts) {
    const [section, id, ...rest] = parts;
    if (rest.length) return null;
    if (session.portal && section !== 'webhooks' && section !== undefined) return null;
    switch (section) {
      case undefined: return session.portal ? webhookList : operationList;
      case 'signin': return async () => go(session.portal ? '/console/webhooks' : '/console/operations', true);
      case 'operations': return id ? (current) => operationPage(id, current) : operationList;
      case 'batches': return id ? (current) => batchPage(id, current) : batchList;
      case 'webhooks':
        if (id === 'new') return webhookNew;
        return id ? (current) => webhookPage(id, current) : webhookList;
      default: return null;
    }
  }

  // ---- sign-in and portal links ---------------------------------------------------------

  function signin(message) {
    const error = h('div');
    const projectField = h('label', { hidden: true }, 'Project id', h('input', { name: 'project', autocomplete: 'off' }));
    const form = h('form', { class: 'card signin', onsubmit: async (e) => {
      e.preventDefault();
      const token = form.elements.token.value.trim();
      const project = form.elements.project.value.trim();
      error.replaceChildren();
      try {
        const who = await call('GET', '/api/whoami', undefined, token);
        const chosen = who.projectId || project;
        if (!chosen) {
          projectField.hidden = false;
          error.replaceChildren(h('p', { class: 'error' }, 'This token serves every project of its tenant: name the project.'));
          return;
        }
        session.save(token, who, chosen);
        const after = STORE.getItem('relais.after');
        STORE.removeItem('relais.after');
        go(after && after.startsWith('/console/') && !after.startsWith('/console/signin') ? after : '/console', true);
      } catch (err) {
        error.replaceChildren(failure(err.status === 401 ? new Error('This token is not accepted.') : err));
      }
    } },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'With an API token (or an OAuth2 access token). It is kept in this tab only, until you sign out or close it.'),
    h('label', {}, 'Token', h('input', { name: 'token', type: 'password', autocomplete: 'off', required: true })),
    projectField,
    h('p', {}, h('button', { type: 'submit' }, 'Sign in')),
    message ? h('p', { class: 'error' }, message) : null,
    error);
    show(form);
    form.elements.token.focus();
  }

  async function portal() {
    const token = new URLSearchParams(location.hash.slice(1)).get('token');
    // The token leaves the address bar (and the history) at once.
    history.replaceState(null, '', '/console/portal');
    if (!token) {
      if (session.portal) return go('/console/webhooks', true);
      return show(h('h1', {}, 'This link holds no token'), h('p', {}, 'Ask for a new link.'));
    }
    try {
      const who = await call('GET', '/api/whoami', undefined, token);
      session.save(token, who, who.projectId);
      go('/console/webhooks', true);
    } catch (err) {
      session.clear();
      nav();
      show(h('h1', {}, 'This link does not work'), h('p', { class: 'error' },
        err.status === 401 ? 'It has expired or is not valid. Ask for a new link.' : err.message));
    }
  }

  // ---- operations ---------------------------------------------------------------------

  function filtersForm(fields, values, onchange) {
    const form = h('form', { class: 'filters', onsubmit: (e) => {
      e.preventDefault();
      const chosen = {};
      for (const [name] of fields) chosen[name] = form.elements[name].value;
      onchange(chosen);
    } },
    fields.map(([name, label, options, type]) => h('label', {}, label, options
      ? h('select', { name }, h('option', { value: '' }, 'any'), options.map((o) => h('option', { value: o, selected: values[name] === o }, o)))
      : h('input', { name, type: type || 'text', value: values[name] || '' }))),
    h('button', { type: 'submit' }, 'Apply'));
    return form;
  }

  function pager(page, hasNext, goTo) {
    return h('div', { class: 'pager' },
      h('button', { class: 'secondary', disabled: page <= 1, onclick: () => goTo(page - 1) }, 'Previous'),
      h('span', { class: 'muted' }, `page ${page}`),
      h('button', { class: 'secondary', disabled: !hasNext, onclick: () => goTo(page + 1) }, 'Next'));
  }

  function searchParams() {
    return Object.fromEntries(new URLSearchParams(location.search));
  }

  async function operationList(current) {
    const params = searchParams();
    const fields = [['status', 'Status', STATUSES], ['operationType', 'Type'], ['priority', 'Priority', PRIORITIES],
      ['dateFrom', 'Created from', null, 'date'], ['dateTo', 'Created to', null, 'date']];
    const load = async () => {
      const list = await api.get(`/operations${query({ ...params, pageSize: params.pageSize || 25 })}`);
      if (!current()) return;
      const s = list.summary;
      show(h('h1', {}, 'Operations'),
        filtersForm(fields, params, (chosen) => go(`/console/operations${query(chosen)}`)),
        h('div', { class: 'counts' }, h('span', { class: 'badge' }, `${s.totalOperations} total`),
          STATUSES.map((st) => h('span', { class: `badge s-${st}`, 'data-count': st }, `${st} ${s[st.toLowerCase()]}`))),
        h('table', { id: 'operations' },
          h('thead', {}, h('tr', {}, ['Operation', 'Type', 'Status', 'Progress', 'Priority', 'Created'].map((t) => h('th', {}, t)))),
          h('tbody', {}, list.operations.map((op) => h('tr', { 'data-operation': op.operationId },
            h('td', { class: 'wrap' }, link(`/console/operations/${encodeURIComponent(op.operationId)}`, op.operationName || op.operationId),
              h('div', { class: 'muted' }, op.operationId)),
            h('td', {}, op.operationType), h('td', {}, badge(op.status)), h('td', {}, bar(op.progress)),
            h('td', {}, op.priority), h('td', {}, when(op.dateCreated)))))),
        list.operations.length ? null : h('p', { class: 'muted' }, 'No operation matches.'),
        pager(list.page, list.hasNextPage, (page) => go(`/console/operations${query({ ...params, page })}`)));
    };
    await load();
    leave = follow((e) => e.type.startsWith('operation.'), () => load().catch(() => {}));
  }

  async function operationPage(id, current) {
    const path = `/operation/${encodeURIComponent(id)}`;
    let eventsPage = 1;
    const load = async () => {
      const [op, events] = await Promise.all([api.get(path), api.get(`${path}/events${query({ page: eventsPage, pageSize: 50 })}`)]);
      let results = null;
      if (op.status === 'Completed') results = await api.get(`${path}/results`).catch(() => null);
      if (!current()) return;
      const notice = h('div');
      const act = (label, cls, run) => h('button', { class: cls, onclick: async () => {
        try { const answer = await run(); notice.replaceChildren(h('p', { class: 'notice' }, `${label}: done`));
          if (answer && answer.newOperationId) go(`/console/operations/${encodeURIComponent(answer.newOperationId)}`);
          else await load(); } catch (err) { notice.replaceChildren(failure(err)); }
      } }, label);
      const actions = h('div', { class: 'actions' },
        FINAL.has(op.status) ? null : act('Cancel', 'danger', () => api.del(path, { reason: 'Cancelled from the console' })),
        FINAL.has(op.status) && op.status !== 'Completed' ? [
          act('Retry (resume)', '', () => api.post(`${path}/retry`, { retryMode: 'resume' })),
          act('Retry (restart)', 'secondary', () => api.post(`${path}/retry`, { retryMode: 'restart' }))] : null);
      show(h('p', {}, link('/console/operations', '← Operations')),
        h('h1', {}, op.operationName || op.operationId),
        h('div', { class: 'card' },
          h('p', {}, h('span', { id: 'status' }, badge(op.status)), ' ', h('span', { class: 'muted' }, op.operationId)),
          bar(op.progress.percentage),
          kv([['Type', op.operationType], ['Priority', op.priority], ['Progress', op.progress.percentage == null ? '' : `${op.progress.percentage}%`],
            ['Current phase', op.progress.currentPhase], ['Attempt', `${op.execution.attempt} of ${op.execution.maxAttempts}`],
            ['Worker', op.execution.workerNode], ['Created', when(op.dateCreated)], ['Started', when(op.progress.startTime)],
            ['Ended', when(op.endTime)], ['Timeout at', when(op.timeoutAt)], ['Retry of', op.retryOf ? link(`/console/operations/${encodeURIComponent(op.retryOf)}`, op.retryOf) : null]]),
          op.error ? [h('h2', {}, 'Error'), json(op.error)] : null,
          actions, notice),
        op.phases.length ? [h('h2', {}, 'Phases'), h('table', {},
          h('thead', {}, h('tr', {}, ['Phase', 'Status', 'Details'].map((t) => h('th', {}, t)))),
          h('tbody', {}, op.phases.map((p) => h('tr', {}, h('td', {}, p.phaseName || ''), h('td', {}, badge(p.status || '')),
            h('td', {}, json(p))))))] : null,
        op.attempts && op.attempts.length ? [h('h2', {}, 'Attempts'), json(op.attempts)] : null,
        results ? [h('h2', {}, 'Results'), json(results)] : null,
        h('h2', {}, 'Events and their deliveries'),
        events.events.length ? events.events.map(eventCard) : h('p', { class: 'muted' }, 'No event yet.'),
        pager(events.page, events.hasNextPage, (page) => { eventsPage = page; load(); }),
        h('h2', {}, 'Parameters'), json(op.parameters));
    };
    await load();
    leave = follow((e) => e.subject === id || (e.data && e.data.operationId === id), () => load().catch(() => {}));
  }

  function eventCard({ event, deliveries }) {
    return h('div', { class: 'card', 'data-event': event.id },
      h('p', {}, h('strong', {}, event.type), ' ', h('span', { class: 'muted' }, `#${event.sequence} · ${when(event.timestamp)}`)),
      deliveries.length ? deliveries.map((d) => h('div', { class: 'delivery' },
        h('p', {}, badge(d.status), ' ', d.channel, d.endpointId ? [' ', d.channel === 'webhook'
          ? link(`/console/webhooks/${encodeURIComponent(d.endpointId)}`, d.endpointId) : d.endpointId] : null,
        d.nextAttemptAt ? h('span', { class: 'muted' }, ` · next attempt ${when(d.nextAttemptAt)}`) : null),
        d.attempts.length ? h('table', {}, h('tbody', {}, d.attempts.map((a) => h('tr', {},
          h('td', {}, when(a.attemptedAt)), h('td', {}, a.statusCode == null ? '—' : String(a.statusCode)),
          h('td', {}, `${a.latencyMs} ms`), h('td', { class: 'wrap' }, a.error || a.responseBody || ''))))) : null))
        : h('p', { class: 'muted' }, 'Sent nowhere.'),
      h('details', {}, h('summary', {}, 'Envelope'), json(event)));
  }

  // ---- batches ------------------------------------------------------------------------

  async function batchList(current) {
    const params = searchParams();
    const load = async () => {
      const list = await api.get(`/batches${query({ ...params, pageSize: params.pageSize || 25 })}`);
      if (!current()) return;
      show(h('h1', {}, 'Batches'),
        filtersForm([['status', 'Status', ['Initiated', 'Running', 'Completed', 'Failed', 'Cancelled']]], params,
          (chosen) => go(`/console/batches${query(chosen)}`)),
        h('table', {}, h('thead', {}, h('tr', {}, ['Batch', 'Status', 'Operations', 'Progress', 'Started'].map((t) => h('th', {}, t)))),
          h('tbody', {}, list.batches.map((b) => h('tr', {},
            h('td', { class: 'wrap' }, link(`/console/batches/${encodeURIComponent(b.batchId)}`, b.batchName || b.batchId),
              h('div', { class: 'muted' }, b.batchId)),
            h('td', {}, badge(b.status)), h('td', {}, String(b.totalOperations)), h('td', {}, bar(b.progress)),
            h('td', {}, when(b.batchStartTime)))))),
        list.batches.length ? null : h('p', { class: 'muted' }, 'No batch yet.'),
        pager(list.page, list.hasNextPage, (page) => go(`/console/batches${query({ ...params, page })}`)));
    };
    await load();
    leave = follow((e) => e.type.startsWith('batch.'), () => load().catch(() => {}));
  }

  /// Each member's depth: the longest chain of dependencies that leads to it.
  function depths(members) {
    const byKey = new Map(members.map((m) => [m.operationKey, m]));
    const depth = new Map();
    const visit = (key, seen) => {
      if (depth.has(key)) return depth.get(key);
      if (seen.has(key)) return 0;
      seen.add(key);
      const m = byKey.get(key);
      const d = m ? Math.max(-1, ...m.dependencies.filter((k) => byKey.has(k)).map((k) => visit(k, seen))) + 1 : 0;
      depth.set(key, d);
      return d;
    };
    members.forEach((m) => visit(m.operationKey, new Set()));
    return depth;
  }

  function dag(members) {
    const drawn = members.slice(0, MAX_DRAWN);
    const depth = depths(drawn);
    const columns = [];
    for (const m of drawn) {
      const d = depth.get(m.operationKey);
      (columns[d] = columns[d] || []).push(m);
    }
    const W = 170; const H = 40; const GX = 70; const GY = 14; const PAD = 12;
    const place = new Map();
    columns.forEach((column, x) => column.forEach((m, y) => place.set(m.operationKey, { x: PAD + x * (W + GX), y: PAD + y * (H + GY) })));
    const width = PAD * 2 + columns.length * (W + GX) - GX;
    const height = PAD * 2 + Math.max(...columns.map((c) => c.length)) * (H + GY) - GY;
    const edges = [];
    for (const m of drawn) {
      const to = place.get(m.operationKey);
      for (const dep of m.dependencies) {
        const from = place.get(dep);
        if (!from) continue;
        const x1 = from.x + W; const y1 = from.y + H / 2; const x2 = to.x - 6; const y2 = to.y + H / 2;
        edges.push(svg('path', { class: 'edge', 'data-from': dep, 'data-to': m.operationKey, 'marker-end': 'url(#arrow)',
          d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}` }));
      }
    }
    const nodes = drawn.map((m) => {
      const { x, y } = place.get(m.operationKey);
      const label = m.operationKey.length > 24 ? `${m.operationKey.slice(0, 23)}…` : m.operationKey;
      return svg('g', { class: `node s-${m.status}`, 'data-key': m.operationKey, 'data-status': m.status, transform: `translate(${x},${y})` },
        svg('a', { href: `/console/operations/${encodeURIComponent(m.operationId)}`, 'data-link': true },
          svg('title', {}, `${m.operationKey}: ${m.status}`),
          svg('rect', { width: W, height: H, rx: 4 }),
          svg('text', { x: 8, y: 16 }, label),
          svg('text', { x: 8, y: 32, class: 'muted' }, m.status + (m.progress != null && !FINAL.has(m.status) ? ` ${m.progress}%` : ''))));
    });
    return h('div', { class: 'dag' },
      svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'dependency graph' },
        svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 1, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto' },
          svg('path', { class: 'arrow', d: 'M0,0 L10,5 L0,10 z' }))),
        svg('g', {}, edges), svg('g', {}, nodes)));
  }

  async function batchPage(id, current) {
    const path = `/batch/${encodeURIComponent(id)}`;
    const load = async () => {
      const batch = await api.get(path);
      if (!current()) return;
      const notice = h('div');
      const act = (label, cls, run) => h('button', { class: cls, onclick: async () => {
        try { await run(); notice.replaceChildren(h('p', { class: 'notice' }, `${label}: done`)); await load(); } catch (err) { notice.replaceChildren(failure(err)); }
      } }, label);
      const finished = ['Completed', 'Failed', 'Cancelled'].includes(batch.status);
      show(h('p', {}, link('/console/batches', '← Batches')),
        h('h1', {}, batch.batchName || batch.batchId),
        h('div', { class: 'card' },
          h('p', {}, h('span', { id: 'status' }, badge(batch.status)), ' ', h('span', { class: 'muted' }, batch.batchId)),
          bar(batch.progress),
          kv([['Operations', String(batch.totalOperations)], ['Failure policy', JSON.stringify(batch.failurePolicy)],
            ['Started', when(batch.batchStartTime)], ['Ended', when(batch.endTime)], ['Retry', String(batch.retryNumber)]]),
          h('div', { class: 'actions' },
            finished ? null : act('Cancel', 'danger', () => api.del(path)),
            finished && batch.status !== 'Completed' ? act('Retry', '', () => api.post(`${path}/retry`)) : null),
          notice),
        h('h2', {}, 'Dependencies'),
        batch.operations.length > MAX_DRAWN
          ? h('p', { class: 'muted' }, `The graph shows the first ${MAX_DRAWN} of ${batch.operations.length} members; the table lists them all.`) : null,
        dag(batch.operations),
        h('h2', {}, 'Members'),
        h('table', {}, h('thead', {}, h('tr', {}, ['Key', 'Operation', 'Status', 'Depends on', 'Progress'].map((t) => h('th', {}, t)))),
          h('tbody', {}, batch.operations.map((m) => h('tr', {},
            h('td', {}, m.operationKey),
            h('td', { class: 'wrap' }, link(`/console/operations/${encodeURIComponent(m.operationId)}`, m.operationName || m.operationId)),
            h('td', {}, badge(m.status)), h('td', {}, m.dependencies.join(', ')), h('td', {}, bar(m.progress)))))));
      memberIds = new Set(batch.operations.map((m) => m.operationId));
    };
    let memberIds = new Set();
    await load();
    leave = follow((e) => e.subject === id || (e.data && (e.data.batchId === id || memberIds.has(e.data.operationId))) || memberIds.has(e.subject),
      () => load().catch(() => {}));
  }

  // ---- webhooks -----------------------------------------------------------------------

  async function webhookList(current) {
    const list = await api.get('/webhooks');
    if (!current()) return;
    show(h('h1', {}, 'Webhooks'),
      h('p', {}, link('/console/webhooks/new', 'New webhook')),
      h('table', { id: 'webhooks' }, h('thead', {}, h('tr', {}, ['Webhook', 'URL', 'Status', 'Events', 'Delivered / failed / pending'].map((t) => h('th', {}, t)))),
        h('tbody', {}, list.webhooks.map((w) => h('tr', {},
          h('td', { class: 'wrap' }, link(`/console/webhooks/${encodeURIComponent(w.webhookId)}`, w.webhookName || w.webhookId)),
          h('td', { class: 'wrap' }, w.webhookUrl), h('td', {}, badge(w.status)),
          h('td', {}, w.allEvents ? 'every event' : w.eventsSubscribed.join(', ')),
          h('td', {}, `${w.deliveryStats.successfulDeliveries} / ${w.deliveryStats.failedDeliveries} / ${w.deliveryStats.pendingDeliveries}`))))),
      list.webhooks.length ? null : h('p', { class: 'muted' }, 'No webhook yet.'));
  }

  function webhookForm(existing, submit) {
    const error = h('div');
    const form = h('form', { class: 'card', onsubmit: async (e) => {
      e.preventDefault();
      const f = form.elements;
      const body = {
        webhookUrl: f.webhookUrl.value.trim(),
        events: f.events.value.split(',').map((s) => s.trim()).filter(Boolean),
      };
      if (f.webhookName.value.trim()) body.webhookName = f.webhookName.value.trim();
      if (f.rateLimit.value.trim()) body.rateLimit = Number(f.rateLimit.value);
      const types = f.operationTypes.value.split(',').map((s) => s.trim()).filter(Boolean);
      if (existing) {
        // A change replaces the whole configuration: what the form does not show is sent back as it is.
        body.filters = { ...existing.filters, operationTypes: types };
        if (body.filters.minProgressIncrement == null) delete body.filters.minProgressIncrement;
        body.retryPolicy = existing.retryPolicy;
        body.headers = existing.headers;
        body.labels = existing.labels;
      } else if (types.length) {
        body.filters = { operationTypes: types };
      }
      if (!body.events.length) delete body.events;
      try { await submit(body); } catch (err) { error.replaceChildren(failure(err)); }
    } },
    h('label', {}, 'URL', h('input', { name: 'webhookUrl', type: 'url', required: true, size: 60, value: existing ? existing.webhookUrl : '' })),
    h('label', {}, 'Name', h('input', { name: 'webhookName', value: existing ? existing.webhookName : '' })),
    h('label', {}, 'Events (comma-separated; empty: every event, today\'s and those to come)',
      h('input', { name: 'events', size: 60, value: existing && !existing.allEvents ? existing.eventsSubscribed.join(', ') : '' })),
    h('label', {}, 'Operation types (comma-separated; empty: every type)', h('input', { name: 'operationTypes', size: 60, value: existing ? existing.filters.operationTypes.join(', ') : '' })),
    h('label', {}, 'Rate limit (deliveries per second; empty: none)', h('input', { name: 'rateLimit', type: 'number', min: 1, max: 10000, value: existing && existing.rateLimit ? existing.rateLimit : '' })),
    h('p', {}, h('button', { type: 'submit' }, existing ? 'Save' : 'Create')),
    error);
    return form;
  }

  async function webhookNew(current) {
    if (!current()) return;
    show(h('p', {}, link('/console/webhooks', '← Webhooks')), h('h1', {}, 'New webhook'),
      webhookForm(null, async (body) => {
        const created = await api.post('/webhooks', body);
        go(`/console/webhooks/${encodeURIComponent(created.webhookId)}`, true);
      }));
  }

  async function webhookPage(id, current) {
    const path = `/webhooks/${encodeURIComponent(id)}`;
    let logPage = 1;
    let messagesPage = 1;
    let messageStatus = '';
    const load = async () => {
      const [w, log, messages] = await Promise.all([api.get(path),
        api.get(`${path}/deliveries${query({ page: logPage, pageSize: 20 })}`),
        api.get(`${path}/messages${query({ page: messagesPage, pageSize: 20, status: messageStatus })}`)]);
      if (!current()) return;
      const notice = h('div', { id: 'notice' });
      const act = (label, cls, run) => h('button', { class: cls, type: 'button', onclick: async () => {
        try { const answer = await run(); await load(); if (answer instanceof Node) document.getElementById('notice').replaceChildren(answer); } catch (err) { notice.replaceChildren(failure(err)); }
      } }, label);
      const secretOf = (answer) => h('div', {}, h('p', { class: 'notice' }, 'The signing secret:'), h('pre', { id: 'secret' }, answer.secret || ''));
      const since = h('input', { name: 'since', type: 'datetime-local' });
      show(h('p', {}, link('/console/webhooks', '← Webhooks')),
        h('h1', {}, w.webhookName || w.webhookId),
        h('div', { class: 'card' },
          h('p', {}, h('span', { id: 'status' }, badge(w.status)), ' ', h('span', { class: 'muted' }, w.webhookId)),
          kv([['URL', w.webhookUrl], ['Events', w.allEvents ? 'every event' : w.eventsSubscribed.join(', ')], ['Disabled because', w.disabledReason],
            ['Rate limit', w.rateLimit ? `${w.rateLimit}/s` : ''],
            ['Labels', Object.entries(w.labels || {}).map(([k, v]) => `${k}: ${v}`).join(', ')], ['Failing since', when(w.failingSince)], ['Last delivery', when(w.lastDelivery)],
            ['Deliveries', `${w.deliveryStats.successfulDeliveries} delivered, ${w.deliveryStats.failedDeliveries} failed, ${w.deliveryStats.pendingDeliveries} pending`]]),
          h('div', { class: 'actions' },
            w.status === 'Active' ? act('Disable', 'secondary', () => api.post(`${path}/disable`)) : act('Enable', '', () => api.post(`${path}/enable`)),
            act('Send a test', 'secondary', async () => { await api.post(`${path}/test`); return h('p', { class: 'notice' }, 'A webhook.test event is on its way.'); }),
            act('Show secret', 'secondary', async () => secretOf(await api.get(`${path}/secret`))),
            act('Rotate secret', 'secondary', async () => secretOf(await api.post(`${path}/rotate-secret`))),
            act('Delete', 'danger', async () => { if (window.confirm('Delete this webhook?')) { await api.del(path); go('/console/webhooks', true); } })),
          h('form', { class: 'actions', onsubmit: async (e) => {
            e.preventDefault();
            try {
              const answer = await api.post(`${path}/recover`, { since: new Date(since.value).toISOString() });
              await load();
              document.getElementById('notice').replaceChildren(h('p', { class: 'notice' }, `${answer.recovered} deliveries sent again.`));
            } catch (err) { notice.replaceChildren(failure(err)); }
          } }, h('label', {}, 'Send again what failed since', since), h('button', { type: 'submit', class: 'secondary' }, 'Recover')),
          notice),
        h('h2', {}, 'Messages'),
        filtersForm([['status', 'Status', ['Pending', 'Delivered', 'Failed']]], { status: messageStatus }, (chosen) => { messageStatus = chosen.status; messagesPage = 1; load(); }),
        h('table', { id: 'messages' }, h('thead', {}, h('tr', {}, ['Event', 'Status', 'Attempts', 'Last answer', 'Created', ''].map((t) => h('th', {}, t)))),
          h('tbody', {}, messages.messages.map((m) => h('tr', {},
            h('td', { class: 'wrap' }, m.eventType, h('div', { class: 'muted' }, m.eventId)), h('td', {}, badge(m.status)),
            h('td', {}, String(m.attempts)), h('td', { class: 'wrap' }, m.lastStatusCode == null ? (m.lastError || '') : String(m.lastStatusCode)),
            h('td', {}, when(m.createdAt)),
            h('td', {}, m.status === 'Pending' ? null : act('Send again', 'secondary', () => api.post(`${path}/deliveries/${encodeURIComponent(m.deliveryId)}/retry`))))))),
        pager(messages.page, messages.hasNextPage, (page) => { messagesPage = page; load(); }),
        h('h2', {}, 'Attempts'),
        h('table', { id: 'attempts' }, h('thead', {}, h('tr', {}, ['When', 'Event', 'Status code', 'Latency', 'Answer or error'].map((t) => h('th', {}, t)))),
          h('tbody', {}, log.deliveries.map((a) => h('tr', {},
            h('td', {}, when(a.attemptedAt)), h('td', {}, a.eventType), h('td', {}, a.statusCode == null ? '—' : String(a.statusCode)),
            h('td', {}, `${a.latencyMs} ms`), h('td', { class: 'wrap' }, a.error || a.responseBody || ''))))),
        pager(log.page, log.hasNextPage, (page) => { logPage = page; load(); }),
        h('h2', {}, 'Change'),
        webhookForm(w, async (body) => { await api.put(path, body); await load(); }));
    };
    await load();
  }

  window.addEventListener('DOMContentLoaded', render);
})();
