#ifndef NBCANVAS_BANNED_H
#define NBCANVAS_BANNED_H

/*
 * Functions that are easy to misuse (unbounded copies, hidden global state,
 * unchecked conversions). Use snprintf, strtol with checks, and the _r forms.
 */
#define BANNED(func) sorry_##func##_is_banned

#undef strcpy
#define strcpy(x, y) BANNED(strcpy)
#undef strcat
#define strcat(x, y) BANNED(strcat)
#undef sprintf
#define sprintf(...) BANNED(sprintf)
#undef strtok
#define strtok(x, y) BANNED(strtok)
#undef atoi
#define atoi(x) BANNED(atoi)
#undef gmtime
#define gmtime(x) BANNED(gmtime)
#undef localtime
#define localtime(x) BANNED(localtime)

#endif
