// Applies a remembered theme before the first paint (a classic script, so it runs before the
// page renders; app.js owns the toggle).
try {
  var t = localStorage.getItem('mha.theme');
  if (t === 'light' || t === 'dark') document.documentElement.dataset.theme = t;
} catch (e) { /* storage unavailable: follow the system */ }
