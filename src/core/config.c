/*
 * The configuration file: INI-style, `[section]`, `key = value`, `#`/`;` comments (also after
 * a value, when preceded by a blank, as in CLI.md's gateway example). Unknown keys are errors
 * so that a typo never silently changes behaviour.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11smime/config.h>

#include "core/error_int.h"

/* A configuration file is small; anything larger is a mistake or an attack. */
#define CONFIG_MAX_SIZE (1024 * 1024)
#define CONFIG_MAX_LINE 4096

typedef struct entry {
	char *section;
	char *key;
	char *value;
} entry;

struct p11s_config {
	entry *v;
	size_t n, cap;
};

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t') {
		s++;
	}
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) {
		*--e = '\0';
	}
	return s;
}

static int known_key(const char *const *known, const char *section, const char *key)
{
	size_t sl = strlen(section);

	if (known == NULL) {
		return 1;
	}
	for (size_t i = 0; known[i] != NULL; i++) {
		const char *k = known[i];

		if (strncmp(k, section, sl) == 0 && k[sl] == '.' && strcmp(k + sl + 1, key) == 0) {
			return 1;
		}
	}
	return 0;
}

static int add(p11s_config *c, const char *section, const char *key, const char *value)
{
	entry *e;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		entry *v = realloc(c->v, cap * sizeof(*v));

		if (v == NULL) {
			return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		}
		c->v = v;
		c->cap = cap;
	}
	e = &c->v[c->n];
	e->section = strdup(section);
	e->key = strdup(key);
	e->value = strdup(value);
	if (e->section == NULL || e->key == NULL || e->value == NULL) {
		free(e->section);
		free(e->key);
		free(e->value);
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	c->n++;
	return P11S_OK;
}

int p11s_config_parse(p11s_config **out, const char *name, const char *text, size_t len,
    const char *const *known)
{
	p11s_config *c;
	char section[128] = "";
	char line[CONFIG_MAX_LINE + 1];
	size_t pos = 0, lineno = 0;
	int rc = P11S_OK;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if (len > CONFIG_MAX_SIZE) {
		rc = p11s_error__set(P11S_ERR_CONFIG, "%s: larger than %d bytes", name,
		    CONFIG_MAX_SIZE);
		goto out;
	}
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t l = nl ? (size_t)(nl - (text + pos)) : len - pos;
		char *s, *eq, *key, *value;

		lineno++;
		if (l > CONFIG_MAX_LINE) {
			rc = p11s_error__set(P11S_ERR_CONFIG, "%s:%zu: line too long", name, lineno);
			goto out;
		}
		memcpy(line, text + pos, l);
		line[l] = '\0';
		pos += l + (nl ? 1 : 0);
		if (memchr(line, '\0', l) != NULL) {
			rc = p11s_error__set(P11S_ERR_CONFIG, "%s:%zu: NUL byte", name, lineno);
			goto out;
		}
		s = trim(line);
		if (*s == '\0' || *s == '#' || *s == ';') {
			continue;
		}
		if (*s == '[') {
			char *end = strchr(s, ']');

			if (end == NULL || *trim(end + 1) != '\0' || end - s - 1 <= 0 ||
			    (size_t)(end - s - 1) >= sizeof(section)) {
				rc = p11s_error__set(P11S_ERR_CONFIG, "%s:%zu: bad section header", name,
				    lineno);
				goto out;
			}
			*end = '\0';
			snprintf(section, sizeof(section), "%s", trim(s + 1));
			continue;
		}
		if ((eq = strchr(s, '=')) == NULL) {
			rc = p11s_error__set(P11S_ERR_CONFIG, "%s:%zu: expected 'key = value'", name,
			    lineno);
			goto out;
		}
		*eq = '\0';
		key = trim(s);
		value = eq + 1;
		/* A comment after a value starts at a blank followed by '#' or ';'. */
		for (char *p = value; *p; p++) {
			if ((*p == '#' || *p == ';') && p > value && (p[-1] == ' ' || p[-1] == '\t')) {
				*p = '\0';
				break;
			}
		}
		value = trim(value);
		if (*key == '\0') {
			rc = p11s_error__set(P11S_ERR_CONFIG, "%s:%zu: empty key", name, lineno);
			goto out;
		}
		for (const char *k = key; *k; k++) {
			if (!isalnum((unsigned char)*k) && *k != '-' && *k != '_' && *k != '.') {
				rc = p11s_error__set(P11S_ERR_CONFIG, "%s:%zu: bad key name", name,
				    lineno);
				goto out;
			}
		}
		if (!known_key(known, section, key)) {
			rc = p11s_error__set(P11S_ERR_CONFIG, "%s:%zu: unknown key '%s%s%s'", name, lineno,
			    section, *section ? "." : "", key);
			goto out;
		}
		if ((rc = add(c, section, key, value)) < 0) {
			goto out;
		}
	}
	*out = c;
	c = NULL;
out:
	p11s_config_free(c);
	return rc;
}

int p11s_config_load(p11s_config **out, const char *path, const char *const *known)
{
	FILE *f;
	char *buf = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if ((f = fopen(path, "rb")) == NULL) {
		return p11s_error__set(P11S_ERR_IO, "cannot open config %s: %s", path,
		    strerror(errno));
	}
	if ((buf = malloc(CONFIG_MAX_SIZE + 1)) == NULL) {
		fclose(f);
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	len = fread(buf, 1, CONFIG_MAX_SIZE + 1, f);
	if (ferror(f)) {
		rc = p11s_error__set(P11S_ERR_IO, "reading config %s: %s", path, strerror(errno));
	} else {
		rc = p11s_config_parse(out, path, buf, len, known);
	}
	fclose(f);
	free(buf);
	return rc;
}

const char *p11s_config_get_nth(const p11s_config *cfg, const char *section, const char *key,
    size_t i)
{
	if (cfg == NULL) {
		return NULL;
	}
	for (size_t j = 0; j < cfg->n; j++) {
		if (strcmp(cfg->v[j].section, section) == 0 && strcmp(cfg->v[j].key, key) == 0) {
			if (i-- == 0) {
				return cfg->v[j].value;
			}
		}
	}
	return NULL;
}

const char *p11s_config_get(const p11s_config *cfg, const char *section, const char *key)
{
	const char *last = NULL;

	if (cfg == NULL) {
		return NULL;
	}
	for (size_t j = 0; j < cfg->n; j++) {
		if (strcmp(cfg->v[j].section, section) == 0 && strcmp(cfg->v[j].key, key) == 0) {
			last = cfg->v[j].value;
		}
	}
	return last;
}

void p11s_config_free(p11s_config *cfg)
{
	if (cfg == NULL) {
		return;
	}
	for (size_t i = 0; i < cfg->n; i++) {
		free(cfg->v[i].section);
		free(cfg->v[i].key);
		free(cfg->v[i].value);
	}
	free(cfg->v);
	free(cfg);
}
