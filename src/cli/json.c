/* Minimal JSON output: strings escaped per RFC 8259 §7. */
#include "cli.h"

void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (*p < 0x20 || *p == 0x7f) {
				fprintf(f, "\\u%04x", *p);
			} else {
				fputc(*p, f);
			}
		}
	}
	fputc('"', f);
}

void json_key(FILE *f, const char *key)
{
	json_str(f, key);
	fputc(':', f);
}

void json_hex(FILE *f, const unsigned char *p, size_t len)
{
	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		fprintf(f, "%02x", p[i]);
	}
	fputc('"', f);
}

void json_opt_str(FILE *f, const char *s)
{
	if (s == NULL) {
		fputs("null", f);
	} else {
		json_str(f, s);
	}
}

void json_header_protection(FILE *f, const char *hp, const p11s_header_field *fields,
    size_t n_fields, const p11s_header_field *differs, size_t n_differs)
{
	if (hp == NULL) {
		fputs("null", f);
		return;
	}
	fputc('{', f);
	json_key(f, "hp");
	json_str(f, hp);
	fputc(',', f);
	json_key(f, "fields");
	fputc('[', f);
	for (size_t i = 0; i < n_fields; i++) {
		fprintf(f, "%s{", i ? "," : "");
		json_key(f, "name");
		json_str(f, fields[i].name);
		fputc(',', f);
		json_key(f, "value");
		json_str(f, fields[i].value);
		fputc('}', f);
	}
	fputs("],", f);
	json_key(f, "differs");
	fputc('[', f);
	for (size_t i = 0; i < n_differs; i++) {
		fprintf(f, "%s{", i ? "," : "");
		json_key(f, "name");
		json_str(f, differs[i].name);
		fputc(',', f);
		json_key(f, "protected");
		json_opt_str(f, differs[i].value);
		fputc(',', f);
		json_key(f, "outer");
		json_opt_str(f, differs[i].outer);
		fputc(',', f);
		json_key(f, "exposed_by_sender");
		fputs(differs[i].exposed ? "true" : "false", f);
		fputc('}', f);
	}
	fputs("]}", f);
}
