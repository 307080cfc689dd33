package session

// WithoutCache makes every Load of m decode afresh, for benchmarks of the
// cache-miss path: entries larger than the byte bound are never kept.
func WithoutCache(m *Manager) { m.cache = newDataCache(cacheMaxEntries, 0, cacheMaxAge) }
